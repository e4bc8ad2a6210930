import { describe, expect, it } from 'vitest';

import { LumaError, SettingError } from '../../src/errors.js';
import {
  formatSettings,
  parseCommandLine,
  parseSettings,
  renderHelp,
  renderSettingsTable,
  SETTING_DEFINITIONS,
  environmentVariable,
} from '../../src/config/settings.js';

function errorOf(run: () => unknown): LumaError {
  try {
    run();
  } catch (error) {
    if (error instanceof LumaError) return error;
    throw error;
  }
  throw new Error('expected a LumaError, but nothing was thrown');
}

describe('parseSettings', () => {
  it('applies defaults without flags', () => {
    const settings = parseSettings([], {});
    expect(settings.port).toBe(8080);
    expect(settings.inactivityTimeoutMs).toBe(600_000);
    expect(settings.scaleThreshold).toBe(80);
    expect(settings.caddyAdmin).toEqual({ kind: 'http', url: 'http://127.0.0.1:2019' });
    expect(settings.dataDir).toBe('/var/lib/luma');
    expect(settings.network).toBe('luma');
    expect(settings.logLevel).toBe('info');
    expect(settings.apiAddress).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8081 });
    expect(settings.wakeAddress).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8082 });
    expect(settings.dnsAddress).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8053 });
    expect(settings.upstreamMode).toBe('dns');
    expect(settings.dnsRefreshMs).toBe(1_000);
    expect(settings.scaleDownWindowMs).toBe(60_000);
    expect(settings.startupTimeoutMs).toBe(60_000);
    expect(settings.drainTimeoutMs).toBe(30_000);
    expect(settings.stopGracePeriodMs).toBe(10_000);
    expect(settings.maxReplicasLimit).toBe(100);
    expect(settings.defaultMaxReplicas).toBe(10);
    expect(settings.wakeQueuePerService).toBe(1000);
    expect(settings.wakeQueueTotal).toBe(10_000);
    expect(settings.maxBodyBytes).toBe(100 * 1024 * 1024);
    expect(settings.dockerHost).toBe('unix:///var/run/docker.sock');
    expect(settings.trustedProxies).toEqual([]);
    expect(settings.containerLabels).toEqual({});
  });

  it.each([
    ['team=web,tier=1', { team: 'web', tier: '1' }],
    ['dev.luma.test=1', { 'dev.luma.test': '1' }],
    ['', {}],
  ])('parses container labels %j', (text, expected) => {
    expect(parseSettings([`-container-labels=${text}`], {}).containerLabels).toEqual(expected);
  });

  it.each([['novalue'], ['=x'], ['dev.luma.instance=abc'], ['bad key=1']])('rejects container labels %j', (text) => {
    expect(() => parseSettings([`-container-labels=${text}`], {})).toThrow(/container-labels/);
  });

  it('reads the original README flags', () => {
    const settings = parseSettings(['-port=9000', '-inactivity-timeout=5m', '-scale-threshold=50'], {});
    expect(settings.port).toBe(9000);
    expect(settings.inactivityTimeoutMs).toBe(300_000);
    expect(settings.scaleThreshold).toBe(50);
  });

  it.each([
    [['-port=9000']],
    [['-port', '9000']],
    [['--port', '9000']],
    [['--port=9000']],
  ])('accepts flag spelling %j', (argv) => {
    expect(parseSettings(argv, {}).port).toBe(9000);
  });

  it('keeps the last of repeated flags', () => {
    expect(parseSettings(['-port=1', '-port=2'], {}).port).toBe(2);
  });

  it('reads environment variables', () => {
    const settings = parseSettings([], {
      LUMA_PORT: '9100',
      LUMA_INACTIVITY_TIMEOUT: '90s',
      LUMA_TRUSTED_PROXIES: '10.0.0.0/8, 192.168.1.1',
      LUMA_API_ADDRESS: '/run/luma/api.sock',
    });
    expect(settings.port).toBe(9100);
    expect(settings.inactivityTimeoutMs).toBe(90_000);
    expect(settings.trustedProxies).toEqual(['10.0.0.0/8', '192.168.1.1/32']);
    expect(settings.apiAddress).toEqual({ kind: 'unix', path: '/run/luma/api.sock' });
  });

  it('prefers flags over environment', () => {
    expect(parseSettings(['-port=9000'], { LUMA_PORT: '9100' }).port).toBe(9000);
  });

  it('treats empty variables as unset', () => {
    expect(parseSettings([], { LUMA_PORT: '' }).port).toBe(8080);
  });

  it('takes docker host from DOCKER_HOST', () => {
    expect(parseSettings([], { DOCKER_HOST: 'tcp://127.0.0.1:2375' }).dockerHost).toBe('tcp://127.0.0.1:2375');
    expect(parseSettings([], { DOCKER_HOST: 'tcp://127.0.0.1:2375', LUMA_DOCKER_HOST: 'unix:///d.sock' }).dockerHost).toBe(
      'unix:///d.sock',
    );
  });

  it.each([
    [['-api-address=[::1]:0'], 'apiAddress', { kind: 'tcp', host: '::1', port: 0 }],
    [['-api-address=localhost:8081'], 'apiAddress', { kind: 'tcp', host: 'localhost', port: 8081 }],
    [['-api-address=unix:/tmp/a.sock'], 'apiAddress', { kind: 'unix', path: '/tmp/a.sock' }],
    [['-wake-address=127.0.0.2:0'], 'wakeAddress', { kind: 'tcp', host: '127.0.0.2', port: 0 }],
    [['-caddy-admin=unix//run/caddy/admin.sock'], 'caddyAdmin', { kind: 'unix', path: '/run/caddy/admin.sock' }],
    [['-caddy-admin=/run/caddy/admin.sock'], 'caddyAdmin', { kind: 'unix', path: '/run/caddy/admin.sock' }],
    [['-caddy-admin=http://caddy:2019/'], 'caddyAdmin', { kind: 'http', url: 'http://caddy:2019' }],
    [['-upstream-mode=dns'], 'upstreamMode', 'dns'],
    [['-log-level=debug'], 'logLevel', 'debug'],
    [['-max-body-size=1'], 'maxBodyBytes', 1],
    [['-max-body-size=1GB'], 'maxBodyBytes', 1_000_000_000],
    [['-drain-timeout=0'], 'drainTimeoutMs', 0],
    [['-stop-grace-period=1m'], 'stopGracePeriodMs', 60_000],
    [['-network=luma_net.1'], 'network', 'luma_net.1'],
  ] as const)('parses %j', (argv, key, expected) => {
    expect(parseSettings(argv, {})[key]).toEqual(expected);
  });

  it.each([
    ['-port=abc', '-port (env LUMA_PORT)', /must be a whole number between 1 and 65535/],
    ['-port=0', '-port (env LUMA_PORT)', /must be between 1 and 65535/],
    ['-port=70000', '-port (env LUMA_PORT)', /must be between 1 and 65535/],
    ['-port=', '-port (env LUMA_PORT)', /whole number/],
    ['-inactivity-timeout=5', '-inactivity-timeout (env LUMA_INACTIVITY_TIMEOUT)', /missing unit; add one of/],
    ['-inactivity-timeout=0', '-inactivity-timeout (env LUMA_INACTIVITY_TIMEOUT)', /must be at least 1ms/],
    ['-inactivity-timeout=-5m', '-inactivity-timeout (env LUMA_INACTIVITY_TIMEOUT)', /must not be negative/],
    ['-inactivity-timeout=1000h', '-inactivity-timeout (env LUMA_INACTIVITY_TIMEOUT)', /maximum Node.js timer delay/],
    ['-startup-timeout=1500us', '-startup-timeout (env LUMA_STARTUP_TIMEOUT)', /whole number of milliseconds/],
    ['-stop-grace-period=1500ms', '-stop-grace-period (env LUMA_STOP_GRACE_PERIOD)', /whole number of seconds/],
    ['-scale-threshold=0', '-scale-threshold (env LUMA_SCALE_THRESHOLD)', /must be between 1 and/],
    ['-api-address=0.0.0.0:8081', '-api-address (env LUMA_API_ADDRESS)', /is not loopback; use a loopback address or a unix socket/],
    ['-api-address=:8081', '-api-address (env LUMA_API_ADDRESS)', /missing host/],
    ['-api-address=example.com:8081', '-api-address (env LUMA_API_ADDRESS)', /not loopback/],
    ['-api-address=relative.sock', '-api-address (env LUMA_API_ADDRESS)', /must be host:port/],
    ['-api-address=unix:relative.sock', '-api-address (env LUMA_API_ADDRESS)', /must be absolute/],
    ['-wake-address=10.0.0.1:8082', '-wake-address (env LUMA_WAKE_ADDRESS)', /not loopback; use a loopback address,/],
    ['-wake-address=/tmp/wake.sock', '-wake-address (env LUMA_WAKE_ADDRESS)', /unix sockets are not supported/],
    ['-dns-address=127.0.0.1:99999', '-dns-address (env LUMA_DNS_ADDRESS)', /out of range/],
    ['-caddy-admin=ftp://x', '-caddy-admin (env LUMA_CADDY_ADMIN)', /unsupported scheme ftp:/],
    ['-caddy-admin=http://127.0.0.1:2019/config', '-caddy-admin (env LUMA_CADDY_ADMIN)', /without a path/],
    ['-network=host', '-network (env LUMA_NETWORK)', /bridge network/],
    ['-network=a', '-network (env LUMA_NETWORK)', /2 or more/],
    ['-log-level=verbose', '-log-level (env LUMA_LOG_LEVEL)', /must be one of fatal, error/],
    ['-upstream-mode=srv', '-upstream-mode (env LUMA_UPSTREAM_MODE)', /must be one of admin, dns/],
    ['-max-body-size=10m', '-max-body-size (env LUMA_MAX_BODY_SIZE)', /ambiguous unit "m"/],
    ['-max-body-size=0', '-max-body-size (env LUMA_MAX_BODY_SIZE)', /must be at least 1B/],
    ['-docker-host=ssh://host', '-docker-host (env LUMA_DOCKER_HOST)', /unsupported scheme ssh:/],
    ['-trusted-proxies=10.0.0.0/33', '-trusted-proxies (env LUMA_TRUSTED_PROXIES)', /prefix length/],
    ['-trusted-proxies=proxy.local', '-trusted-proxies (env LUMA_TRUSTED_PROXIES)', /not a CIDR range/],
    ['-data-dir=', '-data-dir (env LUMA_DATA_DIR)', /must not be empty/],
  ])('rejects %s', (argument, setting, reason) => {
    const error = errorOf(() => parseSettings([argument], {}));
    expect(error).toBeInstanceOf(SettingError);
    expect(error.code).toBe('invalid_setting');
    expect(error.details.setting).toBe(setting);
    expect(error.details.value).toBe(argument.slice(argument.indexOf('=') + 1));
    expect(error.message).toMatch(reason);
  });

  it('names the variable for bad environment values', () => {
    const error = errorOf(() => parseSettings([], { LUMA_SCALE_THRESHOLD: 'many' }));
    expect(error.message).toBe(
      'invalid value "many" for -scale-threshold (env LUMA_SCALE_THRESHOLD): must be a whole number between 1 and 9007199254740991',
    );
  });

  it('names DOCKER_HOST when it is invalid', () => {
    const error = errorOf(() => parseSettings([], { DOCKER_HOST: 'npipe:////./pipe/docker' }));
    expect(error.message).toMatch(/for DOCKER_HOST, the default of -docker-host \(env LUMA_DOCKER_HOST\)/);
  });

  it.each([
    [['-default-max-replicas=20', '-max-replicas-limit=10'], /-default-max-replicas .* must be at most -max-replicas-limit \(10\)/],
    [['-wake-queue-per-service=50', '-wake-queue-total=10'], /-wake-queue-total .* must be at least -wake-queue-per-service \(50\)/],
    [['-port=8443', '-tls-port=8443'], /-tls-port .* must differ from -port \(8443\)/],
  ])('rejects conflicting %j', (argv, message) => {
    expect(() => parseSettings(argv, {})).toThrow(message);
  });

  it.each([
    [['-nope=1'], /unknown flag -nope=1; run luma -help/],
    [['--inactivity_timeout=5m'], /unknown flag --inactivity_timeout=5m/],
    [['serve'], /unexpected argument "serve"/],
    [['-port=1', '--', 'extra'], /unexpected argument "extra"/],
    [['-port'], /flag -port needs a value/],
    [['-version=yes'], /takes no value or =true\/=false/],
  ])('rejects arguments %j', (argv, message) => {
    const error = errorOf(() => parseSettings(argv, {}));
    expect(error.code).toBe('invalid_setting');
    expect(error.message).toMatch(message);
  });

  it('rejects -help as a setting', () => {
    expect(() => parseSettings(['-help'], {})).toThrow(/-help is not a setting/);
  });
});

describe('parseCommandLine', () => {
  it.each([
    [['-help'], 'help'],
    [['--help'], 'help'],
    [['-h'], 'help'],
    [['-port=bad', '--help'], 'help'],
    [['--version'], 'version'],
    [['-version=true'], 'version'],
    [['-version=false'], 'run'],
  ])('returns command for %j', (argv, command) => {
    expect(parseCommandLine(argv, {}).command).toBe(command);
  });

  it('warns about unknown LUMA_ variables', () => {
    const commandLine = parseCommandLine([], { LUMA_PROT: '9000', LUMA_API_TOKEN: 'x'.repeat(32), LUMA_PORT: '9000' });
    expect(commandLine.command).toBe('run');
    if (commandLine.command !== 'run') return;
    expect(commandLine.warnings).toEqual(['LUMA_PROT']);
  });
});

describe('setting definitions', () => {
  const definitions = Object.values(SETTING_DEFINITIONS);

  it('has unique flags and variables', () => {
    const flags = definitions.map((definition) => definition.flag);
    expect(new Set(flags).size).toBe(flags.length);
    expect(environmentVariable({ flag: 'inactivity-timeout' })).toBe('LUMA_INACTIVITY_TIMEOUT');
  });

  it('round-trips defaults through formatSettings', () => {
    const formatted = formatSettings(parseSettings([], {}));
    const argv = Object.entries(formatted).map(([flag, value]) => `-${flag}=${value}`);
    expect(parseSettings(argv, {})).toEqual(parseSettings([], {}));
    expect(formatted['inactivity-timeout']).toBe('10m');
    expect(formatted['max-body-size']).toBe('100MiB');
  });

  it('lists every setting in help', () => {
    const help = renderHelp();
    for (const definition of definitions) {
      expect(help).toContain(`-${definition.flag} `);
      expect(help).toContain(environmentVariable(definition));
    }
    expect(help).toContain('LUMA_API_TOKEN');
  });

  it('lists every setting in the table', () => {
    const rows = renderSettingsTable()
      .split('\n')
      .filter((line) => line.startsWith('| `-'));
    expect(rows).toHaveLength(definitions.length);
    expect(rows[0]).toBe(
      "| `-port` | `LUMA_PORT` | integer | `8080` | Port of Caddy's public HTTP listener, which serves every service. |",
    );
  });
});
