# Tower image: server and agent in one, chosen by the first argument.
# Node 24 runs the TypeScript sources directly (type stripping): no build step.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/mux/package.json packages/mux/
COPY packages/pki/package.json packages/pki/
COPY packages/transport/package.json packages/transport/
COPY packages/server/package.json packages/server/
COPY packages/agent/package.json packages/agent/
COPY packages/controller/package.json packages/controller/
COPY packages/cli/package.json packages/cli/
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules node_modules
COPY package.json ./
COPY packages packages
RUN rm -rf packages/*/test packages/*/bench \
  && ln -s /app/packages/cli/bin/tower.js /usr/local/bin/tower \
  && mkdir -p /var/lib/tower /shared && chown 65532:65532 /var/lib/tower /shared
ENV TOWER_STATE_DIR=/var/lib/tower
USER 65532:65532
# --min-semi-space-size: the GC launch flag of packages/cli/src/gc-flags.ts
ENTRYPOINT ["node", "--min-semi-space-size=8", "/app/packages/cli/src/main.ts"]
CMD ["--help"]
