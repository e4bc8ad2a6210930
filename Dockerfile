# Luma's controller, for docker-compose.yml. Caddy runs from the official caddy image beside it.
#
# npm ci runs with --ignore-scripts: the install scripts in the dependency tree (esbuild's
# binary check, ssh2's and cpu-features' optional native builds, protobufjs' version check) are
# not needed by Luma, and the slim image has no compiler for the native builds.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /opt/luma
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY bin ./bin

# services.json, instance-id and api-token.
VOLUME ["/var/lib/luma"]

# Runs as root because it talks to the mounted Docker socket, whose group id differs between
# hosts. Access to that socket is root-equivalent on the host in any case.
# The check asks the API listener directly; it assumes LUMA_API_ADDRESS is host:port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["node", "-e", "fetch(`http://${process.env.LUMA_API_ADDRESS || '127.0.0.1:8081'}/api/health`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["node", "/opt/luma/bin/luma"]
