# mcpsts as a container: a static binary on distroless, non-root. Run it
# with a read-only root filesystem; it writes only its data directory
# (/var/lib/mcpsts: the audit log, and the SQLite store when no PostgreSQL
# URL is given) and reads its configuration from /etc/mcpsts.
#
#   docker build -t mcpsts .
#   docker run --read-only -v mcpsts-data:/var/lib/mcpsts -v $PWD/etc:/etc/mcpsts:ro -p 8443:8443 mcpsts
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/mcpsts ./cmd/mcpsts

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mcpsts /usr/local/bin/mcpsts
USER 65532:65532
EXPOSE 8443
VOLUME ["/var/lib/mcpsts"]
ENTRYPOINT ["/usr/local/bin/mcpsts", "serve", "--config", "/etc/mcpsts/mcpsts.yaml"]
