/**
 * Minimal Docker registries (HTTP API v2) on 127.0.0.1 for pull error tests. dockerd treats
 * 127.0.0.0/8 as an insecure registry, so it falls back to plain HTTP for these.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type RegistryBehaviour =
  /** Every manifest is missing: 404 MANIFEST_UNKNOWN. */
  | 'manifest-unknown'
  /** Manifest and config exist, the layer blob is missing: the pull fails inside the progress stream. */
  | 'layer-missing'
  /** Manifest requests never get a response. */
  | 'hang';

export interface FakeRegistry {
  /** `127.0.0.1:<port>`, to prefix image references with. */
  host: string;
  /** Request lines received, such as `HEAD /v2/x/manifests/latest`. */
  requests: string[];
  close(): Promise<void>;
}

const API_HEADERS = { 'docker-distribution-api-version': 'registry/2.0' };

function digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function registryError(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { ...API_HEADERS, 'content-type': 'application/json' });
  res.end(JSON.stringify({ errors: [{ code, message, detail: {} }] }));
}

function layerMissingHandler(): (req: IncomingMessage, res: ServerResponse) => void {
  const layerDigest = digest('luma fake layer that is never served');
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [layerDigest] } }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: digest(config) },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: 100, digest: layerDigest }],
    }),
  );

  return (req, res) => {
    const url = req.url ?? '';
    if (url.includes('/manifests/')) {
      res.writeHead(200, {
        ...API_HEADERS,
        'content-type': 'application/vnd.docker.distribution.manifest.v2+json',
        'docker-content-digest': digest(manifest),
        'content-length': manifest.length,
      });
      res.end(req.method === 'HEAD' ? undefined : manifest);
      return;
    }
    if (url.endsWith(digest(config))) {
      res.writeHead(200, { ...API_HEADERS, 'content-length': config.length });
      res.end(config);
      return;
    }
    registryError(res, 404, 'BLOB_UNKNOWN', 'blob unknown to registry');
  };
}

export async function startFakeRegistry(behaviour: RegistryBehaviour): Promise<FakeRegistry> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const layerMissing = layerMissingHandler();

  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.url === '/v2/' || req.url === '/v2') {
      res.writeHead(200, { ...API_HEADERS, 'content-type': 'application/json' });
      res.end('{}');
      return;
    }
    if (behaviour === 'hang') return;
    if (behaviour === 'layer-missing') return layerMissing(req, res);
    registryError(res, 404, 'MANIFEST_UNKNOWN', 'manifest unknown');
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
