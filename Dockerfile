# One vfl service per container: party A, party B or the arbiter, as its config says.
#
#   docker build -t vfl .
#   docker run --network host -u "$(id -u):$(id -g)" -v "$PWD/bank:/srv/vfl" vfl     # serves /srv/vfl/party.toml
#
# The image holds no configuration, key or data: mount them (compose.yaml shows the four-service layout).
FROM python:3.11-slim

WORKDIR /opt/vfl
COPY pyproject.toml README.md LICENSE ./
COPY vfl ./vfl
COPY parties ./parties
COPY arbiter ./arbiter
COPY psi ./psi
RUN pip install --no-cache-dir . && rm -rf /opt/vfl

# Not root. Run it as the owner of the mounted folder (keys and tokens are 0600): docker run -u, compose user:.
RUN useradd --create-home --uid 1000 vfl
USER vfl
WORKDIR /srv/vfl
CMD ["vfl", "serve", "--config", "party.toml"]
