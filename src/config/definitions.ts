import {
  formatListenAddress,
  parseCaddyAdmin,
  parseCidr,
  parseDockerHost,
  parseListenAddress,
  type CaddyAdminEndpoint,
  type ListenAddress,
  type TcpAddress,
} from './addresses.js';
import {
  byteSizeValue,
  checkedValue,
  directoryValue,
  dockerNetworkValue,
  durationValue,
  enumValue,
  integerValue,
  listValue,
  type ValueType,
} from './values.js';
import { LOG_LEVELS, type LogLevel } from '../log.js';
import type { Millis } from '../model.js';

/** Luma's effective settings, from flags, environment variables and defaults. */
export interface Settings {
  port: number;
  /** 0 when Caddy has no HTTPS listener. */
  tlsPort: number;
  inactivityTimeoutMs: Millis;
  scaleThreshold: number;
  scaleDownWindowMs: Millis;
  caddyAdmin: CaddyAdminEndpoint;
  dataDir: string;
  network: string;
  logLevel: LogLevel;
  apiAddress: ListenAddress;
  wakeAddress: TcpAddress;
  dnsAddress: TcpAddress;
  upstreamMode: UpstreamMode;
  dnsRefreshMs: Millis;
  startupTimeoutMs: Millis;
  drainTimeoutMs: Millis;
  stopGracePeriodMs: Millis;
  maxReplicasLimit: number;
  defaultMaxReplicas: number;
  wakeQueuePerService: number;
  wakeQueueTotal: number;
  /** Bytes, at least 1. */
  maxBodyBytes: number;
  /** `DOCKER_HOST` syntax, checked by `parseDockerHost`. */
  dockerHost: string;
  /** Canonical CIDR ranges. */
  trustedProxies: string[];
  /** Extra `key=value` labels put on every container, in addition to Luma's own. */
  containerLabels: Record<string, string>;
}

/** Source of replica addresses for Caddy: its config, written through the admin API, or Luma's DNS server. */
export type UpstreamMode = 'admin' | 'dns';

/** The one definition of a setting, from which parsing, `-help` and the README table come. */
export interface SettingDefinition<T> {
  /** Flag name without dashes; the environment variable is `LUMA_` plus its upper snake case. */
  flag: string;
  type: ValueType<T>;
  /** Default as flag text, or computed from the environment. */
  defaultValue: string | ((env: NodeJS.ProcessEnv) => { text: string; source: string });
  /** Default shown in help when `defaultValue` is computed. */
  defaultDescription?: string;
  description: string;
}

const labelMapValue: ValueType<Record<string, string>> = {
  placeholder: 'key=value,...',
  parse(text) {
    const labels: Record<string, string> = {};
    for (const part of text.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
      const separator = part.indexOf('=');
      if (separator <= 0) throw new Error(`"${part}" is not key=value`);
      const key = part.slice(0, separator);
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(key)) throw new Error(`label key "${key}" may contain only letters, digits, ".", "_" and "-"`);
      if (key.startsWith('dev.luma.') && !key.startsWith('dev.luma.test')) throw new Error(`label key "${key}" is reserved for Luma`);
      labels[key] = part.slice(separator + 1);
    }
    return labels;
  },
  format: (labels) =>
    Object.entries(labels)
      .map(([key, value]) => `${key}=${value}`)
      .join(','),
};

const tcpLoopback = (allowUnixSocket: boolean) => (text: string) =>
  parseListenAddress(text, { allowUnixSocket, loopbackOnly: true });

const loopbackTcpValue = checkedValue<TcpAddress>(
  'host:port',
  (text) => tcpLoopback(false)(text) as TcpAddress,
  formatListenAddress,
);

export const SETTING_DEFINITIONS: { readonly [K in keyof Settings]: SettingDefinition<Settings[K]> } = {
  port: {
    flag: 'port',
    type: integerValue(1, 65535),
    defaultValue: '8080',
    description: "Port of Caddy's public HTTP listener, which serves every service.",
  },
  tlsPort: {
    flag: 'tls-port',
    type: integerValue(0, 65535),
    defaultValue: '0',
    defaultDescription: 'none',
    description:
      "Port of Caddy's HTTPS listener for services' host names, such as 443; 0 turns it off. Caddy obtains a certificate for each host name, from its default ACME CAs for public names and from its own local CA for names such as *.localhost. Public names must resolve to this machine, with public ports 80 and 443 reaching -port and this port. Sets Caddy's http_port to -port and https_port to this port.",
  },
  inactivityTimeoutMs: {
    flag: 'inactivity-timeout',
    type: durationValue({ min: 1 }),
    defaultValue: '10m',
    description: 'Time without requests after which a service scales to zero, unless the service sets its own.',
  },
  scaleThreshold: {
    flag: 'scale-threshold',
    type: integerValue(1),
    defaultValue: '80',
    description:
      'Target concurrent requests per replica; more add replicas. A service can set its own as concurrency.',
  },
  scaleDownWindowMs: {
    flag: 'scale-down-window',
    type: durationValue({ min: 6_000 }),
    defaultValue: '60s',
    description:
      'Window over which average concurrency must stay low before replicas are removed (the stable window, as in Knative). Scale-up reacts within about 1s.',
  },
  caddyAdmin: {
    flag: 'caddy-admin',
    type: checkedValue('url|path', parseCaddyAdmin, (endpoint) => (endpoint.kind === 'http' ? endpoint.url : endpoint.path)),
    defaultValue: 'http://127.0.0.1:2019',
    description: "Caddy's admin API: an http:// origin or the path of its unix socket.",
  },
  dataDir: {
    flag: 'data-dir',
    type: directoryValue,
    defaultValue: '/var/lib/luma',
    description: 'Directory of services.json, the instance id and the API token; created with mode 0700 when missing.',
  },
  network: {
    flag: 'network',
    type: dockerNetworkValue,
    defaultValue: 'luma',
    description: 'Docker network that replicas are attached to.',
  },
  logLevel: {
    flag: 'log-level',
    type: enumValue(LOG_LEVELS),
    defaultValue: 'info',
    description: 'Minimum level of log lines written to standard output.',
  },
  apiAddress: {
    flag: 'api-address',
    type: checkedValue('host:port|path', tcpLoopback(true), formatListenAddress),
    defaultValue: '127.0.0.1:8081',
    description:
      "Listen address of the controller's REST API, which Caddy serves under /api: a loopback host:port (port 0 picks a free port) or a unix socket path.",
  },
  wakeAddress: {
    flag: 'wake-address',
    type: loopbackTcpValue,
    defaultValue: '127.0.0.1:8082',
    description: 'Listen address of the wake-up handler, which receives requests for services without a ready replica; loopback only.',
  },
  dnsAddress: {
    flag: 'dns-address',
    type: loopbackTcpValue,
    defaultValue: '127.0.0.1:8053',
    description: 'Listen address of the DNS server that Caddy queries for replica addresses in dns upstream mode; loopback only.',
  },
  upstreamMode: {
    flag: 'upstream-mode',
    type: enumValue(['admin', 'dns'] as const),
    defaultValue: 'dns',
    description:
      "How Caddy learns replica addresses: admin writes them into Caddy's config through the admin API, dns lets Caddy resolve them from Luma's DNS server.",
  },
  dnsRefreshMs: {
    flag: 'dns-refresh',
    type: durationValue({ min: 250 }),
    defaultValue: '1s',
    description:
      'In dns upstream mode, how long Caddy caches a service\'s SRV answer: a new or removed replica takes effect within this time. At least 250ms.',
  },
  startupTimeoutMs: {
    flag: 'startup-timeout',
    type: durationValue({ min: 1 }),
    defaultValue: '60s',
    description: 'Maximum time for a new replica to respond over HTTP before its start fails, unless the service sets its own.',
  },
  drainTimeoutMs: {
    flag: 'drain-timeout',
    type: durationValue({ min: 0 }),
    defaultValue: '30s',
    description: 'Maximum time a replica removed from routing gets to finish in-flight requests before it is stopped.',
  },
  stopGracePeriodMs: {
    flag: 'stop-grace-period',
    type: durationValue({ min: 0, wholeSeconds: true }),
    defaultValue: '10s',
    description: "Time between SIGTERM and SIGKILL when a replica stops; whole seconds, the unit of Docker's stop timeout.",
  },
  maxReplicasLimit: {
    flag: 'max-replicas-limit',
    type: integerValue(1),
    defaultValue: '100',
    description: 'Largest maxReplicas that a service may set.',
  },
  defaultMaxReplicas: {
    flag: 'default-max-replicas',
    type: integerValue(1),
    defaultValue: '10',
    description: 'maxReplicas of services that do not set it; at most -max-replicas-limit.',
  },
  wakeQueuePerService: {
    flag: 'wake-queue-per-service',
    type: integerValue(1),
    defaultValue: '1000',
    description: 'Maximum requests held for one service while it wakes; more get 503 at once.',
  },
  wakeQueueTotal: {
    flag: 'wake-queue-total',
    type: integerValue(1),
    defaultValue: '10000',
    description: 'Maximum requests held for all waking services together; more get 503 at once. At least -wake-queue-per-service.',
  },
  maxBodyBytes: {
    flag: 'max-body-size',
    type: byteSizeValue(1),
    defaultValue: '100MiB',
    description:
      'Maximum body of a request to a service, such as 100MiB or 1GB; larger requests get 413, from Caddy for ready replicas and for the wake-up handler alike.',
  },
  dockerHost: {
    flag: 'docker-host',
    type: checkedValue('url', (text) => (parseDockerHost(text), text), (text) => text),
    defaultValue: (env) =>
      env.DOCKER_HOST !== undefined && env.DOCKER_HOST !== ''
        ? { text: env.DOCKER_HOST, source: 'DOCKER_HOST' }
        : { text: 'unix:///var/run/docker.sock', source: 'default' },
    defaultDescription: '$DOCKER_HOST, else unix:///var/run/docker.sock',
    description: 'Docker engine endpoint: unix:///path, tcp://host:port, http://host:port or https://host:port.',
  },
  trustedProxies: {
    flag: 'trusted-proxies',
    type: listValue(checkedValue('cidr', parseCidr, (text) => text), 'cidr,...'),
    defaultValue: '',
    defaultDescription: 'none',
    description:
      'Comma-separated CIDR ranges of proxies in front of Caddy. Caddy keeps the X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host headers they send, and replaces them for every other client.',
  },
  containerLabels: {
    flag: 'container-labels',
    type: labelMapValue,
    defaultValue: '',
    defaultDescription: 'none',
    description:
      'Comma-separated key=value labels added to every container Luma creates, for example team=web; keys under dev.luma. other than dev.luma.test are reserved.',
  },
};

/** Returns the environment variable of a setting: `LUMA_` plus its flag in upper snake case. */
export function environmentVariable(definition: { flag: string }): string {
  return `LUMA_${definition.flag.toUpperCase().replaceAll('-', '_')}`;
}

/** Returns the default of a setting as help text shows it. */
export function describeDefault(definition: SettingDefinition<unknown>): string {
  if (definition.defaultDescription !== undefined) return definition.defaultDescription;
  return typeof definition.defaultValue === 'string' ? definition.defaultValue : '';
}
