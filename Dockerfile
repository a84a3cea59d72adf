# One image for every node group; SERVICES picks what a container runs.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The install's own build of the web front (prepare) waits for the sources: run below.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json moleculer.config.ts ./
COPY bin ./bin
COPY lib ./lib
COPY mixins ./mixins
COPY services ./services
COPY scripts ./scripts
COPY web ./web
RUN npm run build && npm run build:web && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production PORT=3000 METRICS_PORT=3030
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/web/dist ./web/dist
USER node
EXPOSE 3000 3030
# SIGTERM reaches node directly: readiness turns 503, in-flight work finishes, then exit.
CMD ["node", "--max-semi-space-size=32", "dist/bin/node.js"]
