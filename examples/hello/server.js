// Luma's first example service: returns a greeting with the container that served the request, how many
// requests that container has served and how long it has been up, so a cold start (first
// request, a fraction of a second up) is easy to tell from a warm one.
//
// Plain Node.js 20, no dependencies. Listens on PORT (default 8080); stops on SIGTERM.
import { createServer } from 'node:http';
import { hostname } from 'node:os';

const port = Number(process.env.PORT ?? 8080);
const startedAt = new Date();
let requests = 0;

function describeUptime(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

const server = createServer((req, res) => {
  // Luma's readiness probe is not a user request, so it does not count.
  if (req.headers['user-agent'] === 'luma-readiness-probe') {
    res.end('ok\n');
    return;
  }
  requests += 1;
  const uptimeSeconds = process.uptime();
  const reply = {
    message: 'Hello from Luma!',
    container: hostname(),
    requests,
    uptimeSeconds: Number(uptimeSeconds.toFixed(3)),
    startedAt: startedAt.toISOString(),
    start: requests === 1 ? 'cold' : 'warm',
  };

  if ((req.headers.accept ?? '').includes('application/json')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(reply) + '\n');
    return;
  }

  const note = requests === 1 ? 'first request of this container: a cold start' : 'warm: this container was already running';
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(
    [
      reply.message,
      '',
      `container:  ${reply.container}`,
      `requests:   ${requests} (${note})`,
      `up for:     ${describeUptime(uptimeSeconds)} (since ${reply.startedAt})`,
      '',
    ].join('\n'),
  );
});

server.listen(port, () => {
  console.log(`hello: listening on port ${port} in container ${hostname()}`);
});

process.on('SIGTERM', () => {
  console.log(`hello: stopping after ${requests} requests`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  // Requests still running get 5 s; Docker's own grace period then applies.
  setTimeout(() => process.exit(0), 5000).unref();
});
