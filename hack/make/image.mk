# Container image without a container engine (hack/image, docs/image.md): the webhook and every plugin binary on a
# base layer from pinned Debian packages (hack/image/debian.lock), reproducible from the commit's SOURCE_DATE_EPOCH,
# with an SPDX SBOM from the binaries' Go build info. Outputs in $(IMAGE_OUT): oci/ (OCI layout), apeiro-cmk.tar
# (docker archive for `docker load` / `kind load image-archive`), apeiro-cmk.spdx.json and digest.
IMAGE_OUT ?= $(BIN)/image
# The chart installs ghcr.io/apeirora/apeiro-cmk:<appVersion> by default; the image carries that reference.
IMAGE_VERSION ?= $(shell awk '/^appVersion:/ {gsub(/"/, "", $$2); print $$2}' deploy/chart/apeiro-cmk/Chart.yaml)
IMAGE_REF ?= ghcr.io/apeirora/apeiro-cmk:$(IMAGE_VERSION)
IMAGE_BUILDER = $(abspath $(IMAGE_OUT))/.image-builder

.PHONY: image-debs
image-debs: ## Fetch the Debian packages pinned in hack/image/debian.lock into the tools cache (verified by SHA-256).
	@bash hack/image/debs.sh >/dev/null

.PHONY: image-debs-update
image-debs-update: ## Pin the Debian archive's current ca-certificates and libc6 in hack/image/debian.lock.
	bash hack/image/debs.sh --update

.PHONY: image-builder
image-builder:
	@mkdir -p $(IMAGE_OUT)
	@cd hack/image && GOFLAGS=-mod=readonly $(GO) build -o $(IMAGE_BUILDER) .

.PHONY: image
image: image-debs image-builder ## Build the OCI image (no Docker): bin/image/{oci,apeiro-cmk.tar,apeiro-cmk.spdx.json}; prints the digest.
	$(IMAGE_BUILDER) compile -root . -out $(IMAGE_OUT)/rootfs
	@SOURCE_DATE_EPOCH="$$(git log -1 --format=%ct)" $(IMAGE_BUILDER) build -root . -bin $(IMAGE_OUT)/rootfs \
		-debs "$$(bash hack/image/debs.sh 2>/dev/null)" -out $(IMAGE_OUT) -tag $(IMAGE_REF) \
		-version $(IMAGE_VERSION) -revision "$$(git rev-parse HEAD)"
	@echo ">> $(IMAGE_REF) in $(IMAGE_OUT)/apeiro-cmk.tar and $(IMAGE_OUT)/oci (kind load image-archive $(IMAGE_OUT)/apeiro-cmk.tar)"

.PHONY: image-verify
image-verify: image-builder ## Check the built image: user, entrypoint, profile paths, SBOM; start every binary inside it (chroot, root only).
	@rm -rf $(IMAGE_OUT)/.unpacked
	$(IMAGE_BUILDER) verify -tar $(IMAGE_OUT)/apeiro-cmk.tar -oci $(IMAGE_OUT)/oci $$([[ $$(id -u) -eq 0 ]] && echo -exec $(IMAGE_OUT)/.unpacked)
	@rm -rf $(IMAGE_OUT)/.unpacked

PEERS += image-debs
PEER_ENV += APEIRO_IMAGE_DEBS="$$(bash hack/image/debs.sh 2>/dev/null)"

# containerd (Debian) is the consumer of `kind load image-archive`: test/image imports the archive with its ctr.
.PHONY: image-containerd
image-containerd: ## Install containerd (Debian), whose importer test/image runs on the image archive.
	@bash hack/peers/apt.sh containerd

PEERS += image-containerd
