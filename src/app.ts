import { createAdaptorServer, type ServerType } from '@hono/node-server';
import { rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createApiApp, type ApiApp } from './api/app.js';
import type { ServiceBackend, ServiceDefaults } from './api/backend.js';
import { AccessLogReceiver } from './caddy/access-log.js';
import { CaddyAdmin } from './caddy/admin.js';
import { CaddyRouting } from './caddy/routing.js';
import { formatListenAddress } from './config/addresses.js';
import { formatSettings, type Settings } from './config/settings.js';
import { ActivityMonitor } from './controller/activity.js';
import { watchCaddy } from './controller/caddy-watch.js';
import { Controller } from './controller/controller.js';
import { waitUntilReady } from './controller/readiness.js';
import { DockerRuntime } from './docker/index.js';
import type { Logger } from './log.js';
import { loadOrCreateApiToken, loadOrCreateInstanceId } from './store/identity.js';
import { ServiceStore } from './store/service-store.js';
import { AdminUpstreamPublisher } from './upstreams/admin-mode.js';
import { WakeHandler } from './wake/handler.js';
import { createMetrics } from './metrics.js';
import { DnsServer } from './dns/server.js';
import { DnsUpstreamPublisher } from './upstreams/dns-mode.js';

/** How often Caddy's per-upstream in-flight counts are read. */
const UPSTREAM_SAMPLE_MS = 500;
/** How often Luma checks that Caddy still has its server, to re-install it after a Caddy restart. */
const CADDY_WATCH_MS = 2_000;

export interface RunningLuma {
  instanceId: string;
  apiAddress: string;
  wakeAddress: string;
  /** Stops accepting API writes, lets wake-ups finish, and closes listeners. Containers keep running. */
  stop(): Promise<void>;
}

/**
 * Starts Luma: loads the store, connects to Docker and Caddy, opens the private listeners,
 * adopts running containers and installs Caddy's server and routes.
 */
export async function startLuma(settings: Settings, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<RunningLuma> {
  const store = new ServiceStore({ dataDir: settings.dataDir, logger });
  const specs = await store.load();
  const instanceId = await loadOrCreateInstanceId(settings.dataDir);
  const apiToken = await loadOrCreateApiToken(settings.dataDir, env);
  for (const warning of apiToken.warnings) logger.warn({ path: apiToken.path }, warning);
  if (apiToken.source === 'created') logger.info({ path: apiToken.path }, 'api token created');

  const docker = new DockerRuntime({
    logger: logger.child({ component: 'docker' }),
    instanceId,
    network: settings.network,
    dockerHost: settings.dockerHost,
    containerLabels: settings.containerLabels,
  });
  const dockerVersion = await docker.connect();
  await docker.ensureNetwork();

  const admin = new CaddyAdmin({
    address: settings.caddyAdmin.kind === 'http' ? settings.caddyAdmin.url : settings.caddyAdmin.path,
    logger,
  });

  // The controller needs the publisher and the publisher needs the listeners' addresses, so the
  // listeners start first with a provider that the controller fills in.
  let controller: Controller | undefined;
  const provider = {
    acquire: (service: string, signal: AbortSignal) => requireController().acquire(service, signal),
    serviceForHost: (host: string) => controller?.serviceForHost(host),
    service: (name: string) => controller?.service(name),
  };
  const requireController = () => requireDefined(controller);

  const wake = new WakeHandler({
    logger,
    provider,
    maxQueuedPerService: settings.wakeQueuePerService,
    maxQueuedTotal: settings.wakeQueueTotal,
    maxBodyBytes: settings.maxBodyBytes,
  });
  const wakeListening = await wake.listen(formatListenAddress(settings.wakeAddress));
  const wakeAddress = formatListenAddress({ kind: 'tcp', host: wakeListening.host, port: wakeListening.port });

  const accessLog = new AccessLogReceiver({ logger, onEntry: (entry) => controller?.recordAccess(entry) });
  await accessLog.start();
  const accessLogAddress = accessLog.address;

  const defaults: ServiceDefaults = {
    port: 8080,
    minReplicas: 0,
    maxReplicas: settings.defaultMaxReplicas,
    maxReplicasLimit: settings.maxReplicasLimit,
    startupTimeoutMs: settings.startupTimeoutMs,
    inactivityTimeoutMs: settings.inactivityTimeoutMs,
    concurrency: settings.scaleThreshold,
  };
  const backendProxy: ServiceBackend = {
    list: () => requireController().list(),
    get: (name) => requireController().get(name),
    create: (spec) => requireController().create(spec),
    update: (name, spec) => requireController().update(name, spec),
    delete: (name) => requireController().delete(name),
  };
  const metrics = createMetrics({ backend: backendProxy, wakeStats: () => wake.stats() });
  const api = createApiApp({
    backend: backendProxy,
    defaults,
    token: apiToken.token,
    logger,
    metrics: async () => ({ contentType: metrics.contentType, body: await metrics.metrics() }),
  });
  const apiServer = await listenApi(api, settings);
  const apiAddress = describeServerAddress(apiServer, settings);

  // In dns mode each route takes its replicas from an SRV record (see src/upstreams/dns-mode.ts).
  let dns: DnsServer | undefined;
  let dnsPublisher: DnsUpstreamPublisher | undefined;
  const routing = new CaddyRouting({
    admin,
    logger,
    instanceId,
    port: settings.port,
    apiAddress,
    wakeAddress,
    accessLogAddress,
    dynamicUpstreams: settings.upstreamMode === 'dns' ? (route) => requireDefined(dnsPublisher).dynamicUpstreams(route) : undefined,
    maxBodyBytes: settings.maxBodyBytes,
    trustedProxies: settings.trustedProxies,
    tlsPort: settings.tlsPort === 0 ? undefined : settings.tlsPort,
  });
  if (settings.upstreamMode === 'dns') {
    dns = new DnsServer({ instanceId, logger });
    const dnsListening = await dns.listen(formatListenAddress(settings.dnsAddress));
    dns.setWakeAddress(wakeListening.host, wakeListening.port);
    dnsPublisher = new DnsUpstreamPublisher({
      dns,
      routes: routing,
      instanceId,
      dnsAddress: formatListenAddress({ kind: 'tcp', host: dnsListening.host, port: dnsListening.port }),
      refreshMs: settings.dnsRefreshMs,
    });
  }

  const publisher = dnsPublisher ?? new AdminUpstreamPublisher(routing);
  const activity = new ActivityMonitor({
    readUpstreams: () => routing.readUpstreams(),
    intervalMs: UPSTREAM_SAMPLE_MS,
    logger: logger.child({ component: 'activity' }),
    onSample: (counts) => controller?.recordInFlight(counts),
    mapAddress: dnsPublisher ? (address) => requireDefined(dnsPublisher).canonicalAddress(address) : undefined,
  });

  controller = new Controller({
    logger: logger.child({ component: 'controller' }),
    runtime: docker,
    probe: waitUntilReady,
    publisher,
    inFlight: activity,
    store,
    defaults,
    drainTimeoutMs: settings.drainTimeoutMs,
    stopGracePeriodMs: settings.stopGracePeriodMs,
    scaleThreshold: settings.scaleThreshold,
    queuedRequests: (service) => wake.waiting(service),
    // Knative's proportions: the panic window is a tenth of the stable window. The scale-down
    // delay, half the stable window here, keeps a replica through short dips.
    autoscaler: {
      stableWindowMs: settings.scaleDownWindowMs,
      panicWindowMs: Math.max(1_000, Math.round(settings.scaleDownWindowMs / 10)),
      scaleDownDelayMs: Math.round(settings.scaleDownWindowMs / 2),
    },
  });
  activity.start();
  await controller.start(specs);

  const events = docker.watchEvents((event) => {
    if (event.kind === 'connected') {
      controller?.reconcile().catch((error: unknown) => logger.error({ err: error }, 'reconcile after docker reconnect failed'));
      return;
    }
    if (event.kind === 'disconnected') return;
    controller?.onContainerEvent(event);
  });

  const stopCaddyWatch = watchCaddy({
    serverPresent: () => routing.serverPresent(),
    republishAll: () => requireController().republishAll(),
    intervalMs: CADDY_WATCH_MS,
    logger: logger.child({ component: 'caddy-watch' }),
  });

  const caddyFeatures = await admin.detectFeatures().catch(() => undefined);
  logger.info(
    {
      instanceId,
      docker: dockerVersion,
      caddy: caddyFeatures,
      settings: formatSettings(settings),
      apiAddress,
      wakeAddress,
      upstreamMode: settings.upstreamMode,
      services: specs.length,
    },
    'luma started',
  );

  return {
    instanceId,
    apiAddress,
    wakeAddress,
    async stop() {
      logger.info('luma stopping');
      stopCaddyWatch();
      await controller?.stop();
      await wake.close();
      events.close();
      activity.stop();
      await accessLog.stop();
      await dns?.close();
      await admin.close();
      await new Promise<void>((resolve) => apiServer.close(() => resolve()));
      logger.info('luma stopped');
    },
  };
}

async function listenApi(api: ApiApp, settings: Settings): Promise<ServerType> {
  const address = settings.apiAddress;
  const server = createAdaptorServer({ fetch: api.fetch });
  if (address.kind === 'unix') await rm(address.path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const onListening = () => {
      server.off('error', reject);
      resolve();
    };
    if (address.kind === 'unix') server.listen(address.path, onListening);
    else server.listen(address.port, address.host, onListening);
  });
  return server;
}

function describeServerAddress(server: ServerType, settings: Settings): string {
  if (settings.apiAddress.kind === 'unix') return formatListenAddress(settings.apiAddress);
  const info = server.address() as AddressInfo;
  return `${settings.apiAddress.host}:${info.port}`;
}

/** Returns a value that start-up assigns before any caller can need it. */
function requireDefined<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('luma is still starting');
  return value;
}
