/**
 * The floor of a cold start: the test image started straight through the Docker Engine API
 * (dockerode), with the settings Luma gives a replica (bridge network, `Init`, `PORT`), and
 * polled over HTTP until it responds. No Luma and no Caddy are involved.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { createDockerClient } from '../../src/docker/client.js';
import { testLabels } from '../../test/support/labels.js';

export interface DirectStartSample {
  /** From the create call until the first HTTP response: the floor of a cold start. */
  totalMs: number;
  createMs: number;
  startMs: number;
  /** Container inspect for the IP address. */
  inspectMs: number;
  /** From the inspect until the first HTTP response. */
  untilResponseMs: number;
  probes: number;
}

/** Time between probes. Luma probes every 25 ms, so the floor is measured more finely than Luma can. */
const PROBE_INTERVAL_MS = 5;
const PROBE_TIMEOUT_MS = 1_000;
const READY_TIMEOUT_MS = 30_000;
const PORT = 8080;

export const BENCH_LABEL = 'dev.luma.bench';

export class DirectStarter {
  /** The engine Luma uses too: `DOCKER_HOST`, else the default unix socket. */
  private readonly docker = createDockerClient(process.env.DOCKER_HOST || undefined);
  private readonly network = `luma-bench-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly labels = { ...testLabels(), [BENCH_LABEL]: '1' };
  private readonly containers = new Set<string>();
  private networkCreated = false;

  constructor(private readonly image: string) {}

  /** Starts one container, waits for its first HTTP response, removes it and returns the times. */
  async measure(): Promise<DirectStartSample> {
    await this.ensureNetwork();

    const createdAt = performance.now();
    const container = await this.docker.createContainer({
      name: `${this.network}-${randomBytes(3).toString('hex')}`,
      Image: this.image,
      Env: [`PORT=${PORT}`],
      Labels: this.labels,
      HostConfig: { Init: true, RestartPolicy: { Name: 'no' }, NetworkMode: this.network },
      NetworkingConfig: { EndpointsConfig: { [this.network]: {} } },
    });
    this.containers.add(container.id);

    try {
      const startedAt = performance.now();
      await container.start();
      const inspectedAt = performance.now();
      const info = await container.inspect();
      const ip = info.NetworkSettings.Networks[this.network]?.IPAddress;
      if (!ip) throw new Error(`container ${container.id} has no IP address on network ${this.network}`);
      const probingAt = performance.now();
      const probes = await waitForAnswer(`http://${ip}:${PORT}`);
      const respondedAt = performance.now();

      return {
        totalMs: respondedAt - createdAt,
        createMs: startedAt - createdAt,
        startMs: inspectedAt - startedAt,
        inspectMs: probingAt - inspectedAt,
        untilResponseMs: respondedAt - probingAt,
        probes,
      };
    } finally {
      await this.remove(container.id);
    }
  }

  /** Removes every container and the network this starter created. */
  async close(): Promise<void> {
    for (const id of [...this.containers]) await this.remove(id);
    if (this.networkCreated) {
      await this.docker.getNetwork(this.network).remove().catch(() => undefined);
      this.networkCreated = false;
    }
  }

  private async ensureNetwork(): Promise<void> {
    if (this.networkCreated) return;
    await this.docker.createNetwork({ Name: this.network, Driver: 'bridge', Labels: this.labels });
    this.networkCreated = true;
  }

  private async remove(id: string): Promise<void> {
    await this.docker.getContainer(id).remove({ force: true }).catch(() => undefined);
    this.containers.delete(id);
  }
}

/** Sends `GET /` on a fresh connection every PROBE_INTERVAL_MS until any response; returns the probe count. */
async function waitForAnswer(origin: string): Promise<number> {
  const deadline = performance.now() + READY_TIMEOUT_MS;
  for (let probes = 1; performance.now() < deadline; probes += 1) {
    const client = new Client(origin, { connectTimeout: PROBE_TIMEOUT_MS });
    const probeStartedAt = performance.now();
    try {
      const response = await client.request({
        path: '/',
        method: 'GET',
        headersTimeout: PROBE_TIMEOUT_MS,
        bodyTimeout: PROBE_TIMEOUT_MS,
      });
      await response.body.arrayBuffer();
      return probes;
    } catch {
      // Connection refused until the app listens.
    } finally {
      await client.destroy().catch(() => undefined);
    }
    const waitMs = probeStartedAt + PROBE_INTERVAL_MS - performance.now();
    if (waitMs > 0) await sleep(waitMs);
  }
  throw new Error(`no HTTP response from ${origin} within ${READY_TIMEOUT_MS} ms`);
}
