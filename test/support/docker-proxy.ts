/**
 * A TCP proxy on 127.0.0.1 in front of the Docker engine's unix socket. A controller started
 * with `--docker-host=tcp://127.0.0.1:<port>` reaches the engine only through it, so a test can
 * make the engine "go away" for that controller without touching the real dockerd, which other
 * processes share.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface DockerProxy {
  port: number;
  /** `tcp://127.0.0.1:<port>`. */
  dockerHost: string;
  /** Connections accepted since start. */
  readonly accepted: number;
  /** Closes every open connection and stops listening, so new connections are refused. */
  cut(): Promise<void>;
  /** Listens again on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startDockerProxy(socketPath = '/var/run/docker.sock'): Promise<DockerProxy> {
  const open = new Set<Socket>();
  let accepted = 0;
  let server: Server;

  const listen = (port: number): Promise<Server> =>
    new Promise((resolve, reject) => {
      const created = createServer((client) => {
        accepted += 1;
        const engine = createConnection(socketPath);
        open.add(client);
        open.add(engine);
        const close = () => {
          client.destroy();
          engine.destroy();
          open.delete(client);
          open.delete(engine);
        };
        client.on('error', close).on('close', close);
        engine.on('error', close).on('close', close);
        client.pipe(engine);
        engine.pipe(client);
      });
      created.once('error', reject);
      created.listen(port, '127.0.0.1', () => resolve(created));
    });

  server = await listen(0);
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('docker proxy has no TCP address');
  const port = address.port;

  const stop = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of open) socket.destroy();
    open.clear();
    await closed;
  };

  return {
    port,
    dockerHost: `tcp://127.0.0.1:${port}`,
    get accepted() {
      return accepted;
    },
    cut: stop,
    async restore() {
      server = await listen(port);
    },
    close: async () => {
      if (server.listening) await stop();
    },
  };
}
