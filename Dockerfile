# syntax=docker/dockerfile:1
# nclav server image: a Swift release build, then a slim Debian runtime with terraform and
# tofu. Build: make image (or docker build -t nclav .). Run: docker run -p 8080:8080 nclav.
# The same image is an agent for a server started with --agents-only:
#   docker run nclav agent --remote https://nclav.example.com --token nclav-agent.…

ARG SWIFT_VERSION=6.3
ARG DEBIAN_RELEASE=bookworm

# --- build ------------------------------------------------------------------------------
FROM swift:${SWIFT_VERSION}-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsqlite3-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN swift build -c release --product nclav --static-swift-stdlib \
 && install -D "$(swift build -c release --show-bin-path)/nclav" /out/nclav

# --- tools: terraform and tofu, checked against their published SHA-256 sums -----------
FROM debian:${DEBIAN_RELEASE}-slim AS tools
ARG TERRAFORM_VERSION=1.11.4
ARG TOFU_VERSION=1.9.1
ARG TARGETARCH=amd64
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl unzip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /tmp/tools
RUN curl -fsSLO "https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}_linux_${TARGETARCH}.zip" \
 && curl -fsSLO "https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/terraform_${TERRAFORM_VERSION}_SHA256SUMS" \
 && grep " terraform_${TERRAFORM_VERSION}_linux_${TARGETARCH}.zip\$" "terraform_${TERRAFORM_VERSION}_SHA256SUMS" | sha256sum -c - \
 && unzip -q "terraform_${TERRAFORM_VERSION}_linux_${TARGETARCH}.zip" terraform -d /out \
 && curl -fsSLO "https://github.com/opentofu/opentofu/releases/download/v${TOFU_VERSION}/tofu_${TOFU_VERSION}_linux_${TARGETARCH}.zip" \
 && curl -fsSLO "https://github.com/opentofu/opentofu/releases/download/v${TOFU_VERSION}/tofu_${TOFU_VERSION}_SHA256SUMS" \
 && grep " tofu_${TOFU_VERSION}_linux_${TARGETARCH}.zip\$" "tofu_${TOFU_VERSION}_SHA256SUMS" | sha256sum -c - \
 && unzip -q "tofu_${TOFU_VERSION}_linux_${TARGETARCH}.zip" tofu -d /out

# --- runtime ----------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim
# libsqlite3: the embedded store; libcurl4: Foundation networking; git: terraform module
# sources; curl: the container health check; ca-certificates: TLS to clouds and PostgreSQL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl git libsqlite3-0 libcurl4 tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 nclav \
 && useradd --system --uid 10001 --gid nclav --home-dir /var/lib/nclav --create-home --shell /usr/sbin/nologin nclav
COPY --from=tools /out/terraform /out/tofu /usr/local/bin/
COPY --from=build /out/nclav /usr/local/bin/nclav
USER nclav:nclav
ENV NCLAV_HOME=/var/lib/nclav \
    NCLAV_BIND=0.0.0.0 \
    NCLAV_PORT=8080 \
    TF_IN_AUTOMATION=1
WORKDIR /var/lib/nclav
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s CMD curl -fsS http://localhost:8080/health || exit 1
ENTRYPOINT ["nclav"]
CMD ["serve"]
