/**
 * WebSockets through the wake-up path and through Caddy warm: an upgrade as the first request to
 * a sleeping service, several upgrades sharing one start, and an open socket keeping its service
 * awake past the inactivity timeout. Real Caddy, controller process and Docker engine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createService, getService, startLuma, type LumaInstance } from '../support/luma.js';
import { sleep, waitFor } from '../support/ports.js';
import { openWebSocket } from '../support/websocket.js';

const TEST_IMAGE = 'luma-test-app:latest';
const INACTIVITY_MS = 3_000;

let caddy: CaddyProcess;

beforeAll(async () => {
  caddy = await startCaddy();
});

afterAll(async () => {
  await caddy?.stop();
});

async function serviceState(luma: LumaInstance, name: string): Promise<string> {
  return ((await getService(luma, name)).status.state as string) ?? 'unknown';
}

/** Waits until the service sleeps and returns the time that took, in ms. */
async function timeUntilSleeping(luma: LumaInstance, name: string, timeoutMs: number): Promise<number> {
  const started = Date.now();
  await waitFor(`${name} to sleep`, async () => ((await serviceState(luma, name)) === 'sleeping' ? true : undefined), timeoutMs, 200);
  return Date.now() - started;
}

describe.each(['dns', 'admin'])('websocket in %s upstream mode', (mode) => {
  let luma: LumaInstance;

  beforeAll(async () => {
    luma = await startLuma({
      caddyAdminUrl: caddy.adminUrl,
      args: [`-upstream-mode=${mode}`, `-inactivity-timeout=${INACTIVITY_MS}ms`],
    });
  });

  afterAll(async () => {
    await luma?.destroy();
  });

  it('opens a socket to a cold service', async () => {
    await createService(luma, { name: 'ws-cold', image: TEST_IMAGE, env: { BOOT_DELAY_MS: '700' } });
    expect(await serviceState(luma, 'ws-cold')).toBe('sleeping');

    const socket = await openWebSocket(luma.port, '/ws-cold/ws');
    try {
      expect(await socket.echo('first')).toBe('first');
      expect(await luma.containers({ service: 'ws-cold', running: true })).toHaveLength(1);

      // The socket outlives the route change that follows the wake (a config write in admin
      // mode, a new SRV answer in dns mode).
      await sleep(2_000);
      expect(socket.isClosed()).toBe(false);
      expect(await socket.echo('after the route change')).toBe('after the route change');
    } finally {
      socket.close();
    }
  });

  it('starts one container for five cold sockets', async () => {
    await createService(luma, { name: 'ws-many', image: TEST_IMAGE, env: { BOOT_DELAY_MS: '700' } });

    const sockets = await Promise.all(Array.from({ length: 5 }, () => openWebSocket(luma.port, '/ws-many/ws')));
    try {
      const echoes = await Promise.all(sockets.map((socket, i) => socket.echo(`socket ${i}`)));
      expect(echoes).toEqual(sockets.map((_, i) => `socket ${i}`));
      expect(await luma.containers({ service: 'ws-many' })).toHaveLength(1);
    } finally {
      for (const socket of sockets) socket.close();
    }
  });

  it('keeps a cold-opened socket awake', async () => {
    await createService(luma, { name: 'ws-held', image: TEST_IMAGE, inactivityTimeout: `${INACTIVITY_MS}ms` });
    const socket = await openWebSocket(luma.port, '/ws-held/ws');
    const [container] = await luma.containers({ service: 'ws-held', running: true });

    // Silent for twice the inactivity timeout: only the open socket keeps the service awake.
    await sleep(2 * INACTIVITY_MS + 1_000);
    expect(await serviceState(luma, 'ws-held')).toBe('ready');
    expect(await socket.echo('still here')).toBe('still here');
    expect(await luma.containers({ service: 'ws-held', running: true })).toEqual([container]);

    socket.close();
    const closedAt = Date.now();
    const sleptAfterMs = await timeUntilSleeping(luma, 'ws-held', INACTIVITY_MS + 15_000);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(INACTIVITY_MS - 500);
    expect(sleptAfterMs).toBeLessThan(INACTIVITY_MS + 10_000);
  });

  it('keeps a warm-opened socket awake', async () => {
    await createService(luma, { name: 'ws-warm', image: TEST_IMAGE, inactivityTimeout: `${INACTIVITY_MS}ms` });
    expect((await fetch(`${luma.url}/ws-warm/`)).status).toBe(200);
    // Past the SRV cache lifetime and the route write, Caddy dials the replica itself.
    await sleep(1_500);

    const socket = await openWebSocket(luma.port, '/ws-warm/ws');
    await sleep(2 * INACTIVITY_MS + 1_000);
    expect(await serviceState(luma, 'ws-warm')).toBe('ready');
    expect(await socket.echo('warm')).toBe('warm');

    socket.close();
    const closedAt = Date.now();
    await timeUntilSleeping(luma, 'ws-warm', INACTIVITY_MS + 15_000);
    expect(Date.now() - closedAt).toBeGreaterThanOrEqual(INACTIVITY_MS - 500);
  });
});
