/**
 * Failed starts through the real Caddy, controller and Docker engine: each must reach the waiting
 * client as a fast 5xx with `Retry-After` and a reason naming the service, leave no container
 * behind, show up in the API, and back off before the next try.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createService, getService, startLuma, type LumaInstance } from '../support/luma.js';
import { freePort, waitFor } from '../support/ports.js';

const TEST_IMAGE = 'luma-test-app:latest';

let caddy: CaddyProcess;
let luma: LumaInstance;
let registry: Server;
let registryPort: number;

beforeAll(async () => {
  // A registry on loopback that knows no image: pulls from it fail with "manifest unknown".
  registryPort = await freePort();
  registry = createServer((request, response) => {
    if (request.url === '/v2/' || request.url === '/v2') {
      response.writeHead(200, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' });
      response.end('{}');
      return;
    }
    response.writeHead(404, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' });
    response.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
  });
  await new Promise<void>((resolve) => registry.listen(registryPort, '127.0.0.1', resolve));

  caddy = await startCaddy();
  luma = await startLuma({ caddyAdminUrl: caddy.adminUrl });
});

afterAll(async () => {
  await luma?.destroy();
  await caddy?.stop();
  await new Promise((resolve) => registry?.close(resolve));
});

async function expectFailure(name: string, expectedStatus: number, reason: RegExp): Promise<void> {
  const started = Date.now();
  const response = await fetch(`${luma.url}/${name}/`);
  const body = await response.text();
  expect(response.status, body).toBe(expectedStatus);
  expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
  expect(body).toContain(`"${name}"`);
  expect(body).toMatch(reason);
  expect(Date.now() - started).toBeLessThan(30_000);
}

describe('start failures', () => {
  it('reports an image the registry does not have', async () => {
    await createService(luma, { name: 'no-image', image: `127.0.0.1:${registryPort}/luma/missing:latest` });
    await expectFailure('no-image', 502, /not found|manifest unknown/i);

    const view = await getService(luma, 'no-image');
    expect(view.status.state).toBe('failed');
    expect(view.status.lastError.code).toBe('image_not_found');
  });

  it('reports an unreachable registry', async () => {
    await createService(luma, { name: 'no-registry', image: '127.0.0.1:1/luma/missing:latest' });
    await expectFailure('no-registry', 502, /pull/i);
    const view = await getService(luma, 'no-registry');
    expect(view.status.lastError.code).toBe('image_pull_failed');
  });

  it('reports a crash during boot with its output', async () => {
    await createService(luma, { name: 'crasher', image: TEST_IMAGE, env: { CRASH_ON_BOOT: '3' } });
    await expectFailure('crasher', 502, /exit/i);

    const view = await getService(luma, 'crasher');
    expect(view.status.state).toBe('failed');
    expect(view.status.lastError.code).toBe('replica_exited');
    expect(view.status.lastError.exitCode).toBe(3);
    expect((view.status.lastError.logTail as string[]).join('\n').length).toBeGreaterThan(0);
    await waitFor('failed container removed', async () => ((await luma.containers({ service: 'crasher' })).length === 0 ? true : undefined));
  });

  it('times out an app that never answers HTTP', async () => {
    await createService(luma, { name: 'silent', image: TEST_IMAGE, env: { NEVER_ANSWER: '1' }, startupTimeout: '3s' });
    const started = Date.now();
    await expectFailure('silent', 504, /did not become ready|timed out/i);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_500);

    const view = await getService(luma, 'silent');
    expect(view.status.lastError.code).toBe('startup_timeout');
    await waitFor('timed-out container removed', async () => ((await luma.containers({ service: 'silent' })).length === 0 ? true : undefined));
  });

  it('backs off after a failure instead of looping', async () => {
    await createService(luma, { name: 'backoff', image: TEST_IMAGE, env: { CRASH_ON_BOOT: '4' } });
    await expectFailure('backoff', 502, /exit/i);

    const second = await fetch(`${luma.url}/backoff/`);
    expect(second.status).toBe(503);
    expect(Number(second.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await second.text()).toContain('"backoff"');
  });

  it('serves after the image is fixed', async () => {
    await createService(luma, { name: 'fixed', image: TEST_IMAGE, env: { CRASH_ON_BOOT: '5' } });
    await expectFailure('fixed', 502, /exit/i);

    const patch = await fetch(`${luma.url}/api/services/fixed`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/merge-patch+json' },
      body: JSON.stringify({ env: { CRASH_ON_BOOT: null } }),
    });
    expect(patch.status).toBe(200);
    const response = await fetch(`${luma.url}/fixed/`);
    expect(response.status).toBe(200);
  });
});
