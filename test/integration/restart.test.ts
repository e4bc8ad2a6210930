/**
 * Controller and Caddy restarts against the real engine: running replicas are adopted (no
 * duplicates, no orphans) and Caddy's routes are rebuilt, also when Caddy restarted empty.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCaddy, type CaddyProcess } from '../support/caddy.js';
import { createService, getService, startLuma, type LumaInstance } from '../support/luma.js';
import { waitFor } from '../support/ports.js';

const TEST_IMAGE = 'luma-test-app:latest';

let caddy: CaddyProcess;
let luma: LumaInstance;

beforeAll(async () => {
  caddy = await startCaddy();
  luma = await startLuma({ caddyAdminUrl: caddy.adminUrl });
});

afterAll(async () => {
  await luma?.destroy();
  await caddy?.stop();
});

async function containerIdOf(name: string): Promise<string> {
  const response = await fetch(`${luma.url}/${name}/`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { containerId: string }).containerId;
}

describe('restarts', () => {
  it('adopts running replicas after a controller crash', async () => {
    await createService(luma, { name: 'adopted', image: TEST_IMAGE });
    await createService(luma, { name: 'floor', image: TEST_IMAGE, minReplicas: 2 });
    const before = await containerIdOf('adopted');
    await waitFor('two floor replicas', async () => ((await luma.containers({ service: 'floor', running: true })).length === 2 ? true : undefined), 30_000);
    const floorBefore = (await luma.containers({ service: 'floor', running: true })).sort();

    await luma.kill();
    luma = await startLuma({ ...luma.options });

    const view = await waitFor('adopted replica ready', async () => {
      const service = await getService(luma, 'adopted');
      return service.status.state === 'ready' ? service : undefined;
    });
    expect(view.status.replicas).toHaveLength(1);
    expect(await containerIdOf('adopted')).toBe(before);
    expect(await luma.containers({ service: 'adopted' })).toHaveLength(1);
    expect((await luma.containers({ service: 'floor', running: true })).sort()).toEqual(floorBefore);
  });

  it('removes containers of services deleted while it was down', async () => {
    await createService(luma, { name: 'orphan', image: TEST_IMAGE });
    await containerIdOf('orphan');
    await luma.stop();

    // Remove the service from the store behind Luma's back, as a restored backup would.
    const { readFile, writeFile } = await import('node:fs/promises');
    const file = `${luma.dataDir}/services.json`;
    const stored = JSON.parse(await readFile(file, 'utf8')) as { services: Array<{ name: string }> };
    stored.services = stored.services.filter((s) => s.name !== 'orphan');
    await writeFile(file, JSON.stringify(stored));

    luma = await startLuma({ ...luma.options });
    await waitFor('orphan removed', async () => ((await luma.containers({ service: 'orphan' })).length === 0 ? true : undefined), 20_000);
  });

  it('leaves containers of another instance alone', async () => {
    const other = await startLuma({ caddyAdminUrl: caddy.adminUrl });
    try {
      await createService(other, { name: 'shared-name', image: TEST_IMAGE, minReplicas: 1 });
      await createService(luma, { name: 'shared-name', image: TEST_IMAGE });
      const [otherContainer] = await waitFor('other instance replica', async () => {
        const ids = await other.containers({ service: 'shared-name', running: true });
        return ids.length === 1 ? ids : undefined;
      }, 30_000);
      await containerIdOf('shared-name');

      // A restart adopts and sweeps only containers labelled with this instance's id.
      await luma.kill();
      luma = await startLuma({ ...luma.options });
      await luma.containers();
      await getService(luma, 'shared-name');
      expect(await other.containers({ service: 'shared-name', running: true })).toEqual([otherContainer]);

      const response = await fetch(`${other.url}/shared-name/`);
      expect(response.status).toBe(200);
      expect(((await response.json()) as { containerId: string }).containerId).toBe(otherContainer!.slice(0, 12));
    } finally {
      await other.destroy();
    }
  });

  it('rebuilds routes after caddy restarts empty', async () => {
    await createService(luma, { name: 'rerouted', image: TEST_IMAGE });
    const before = await containerIdOf('rerouted');

    await caddy.restart({ keepConfig: false });
    await waitFor('routes re-installed', async () => {
      const response = await fetch(`${luma.url}/rerouted/`);
      return response.status === 200 ? true : undefined;
    }, 15_000, 200);
    expect(await containerIdOf('rerouted')).toBe(before);
  });
});
