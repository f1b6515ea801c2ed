# syntax=docker/dockerfile:1

# Build a static binary.
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/jobrelay ./cmd/jobrelay

# Run it on a minimal image: CA certificates and time zones, no shell, a
# non-root user. The migrations are embedded in the binary.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="jobrelay" \
      org.opencontainers.image.description="Transactional outbox relay: PostgreSQL jobs to a Redis stream, and its review workers" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/jobrelay /usr/local/bin/jobrelay
USER nonroot:nonroot
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/jobrelay"]
CMD ["run"]
