#!/usr/bin/env bash
# Validates the Helm chart deploy/helm/silentauth-worker without a cluster (docs/kubernetes.md):
#   1. Helm (helm.sh/helm/v4) built from the Go module proxy, cached in target/chart-check/;
#   2. `helm lint --strict` and `helm template` of the default values and of every values example;
#   3. values that contradict each other or put a secret inline must fail `helm template` with a
#      message naming the value;
#   4. every rendered object checked by crates/chart-check: built-in kinds round-trip through the
#      Kubernetes API types (k8s-openapi) with no field lost, the ScaledObject and
#      TriggerAuthentication against the CRD schemas of KEDA's own Go module, the kafka trigger's
#      keys against KEDA's kafka scaler; the worker config the Deployment mounts, with the
#      Deployment's environment, passes `silentauth-worker check-config`;
#   5. the ServiceMonitor against the Prometheus Operator's Go types
#      (crates/chart-check/servicemonitor: its module is served, the operator's CRD files are not).
# Needs Go and cargo; reaches only the Go module proxy and crates.io. Run from anywhere.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

HELM_VERSION=v4.3.2
# KEDA v2.21.1 needs Go 1.27.4; v2.21.0 builds on the Go of this machine (only its files are used).
KEDA_VERSION=v2.21.0

chart=deploy/helm/silentauth-worker
cache="$root/target/chart-check"
work="$cache/work"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
rm -rf "$work"
mkdir -p "$cache" "$work"

say() { echo "chart-check: $*" >&2; }
started=$SECONDS

# Go flags as the brief of this check: modules resolved from the proxy, whatever go.mod says.
GOFLAGS="-mod=mod $(go env GOFLAGS)"
export GOFLAGS

helm="$cache/helm-$HELM_VERSION/helm"
if [[ ! -x "$helm" ]]; then
    say "building helm $HELM_VERSION from the Go module proxy ($(go env GOPROXY))"
    GOBIN="$(dirname "$helm")" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
fi
say "helm: $("$helm" version --short) ($((SECONDS - started)) s)"

keda_dir="$(cd "$work" && go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$keda_dir" || ! -f "$keda_dir/config/crd/bases/keda.sh_scaledobjects.yaml" ]]; then
    say "KEDA $KEDA_VERSION: no CRDs found in the module (go mod download -json github.com/kedacore/keda/v2@$KEDA_VERSION)"
    exit 1
fi
say "KEDA $KEDA_VERSION CRDs from $keda_dir"

# The chart's copy of the Grafana dashboard is the repository's.
if ! cmp -s config/grafana/dashboards/silentauth.json "$chart/dashboards/silentauth.json"; then
    say "$chart/dashboards/silentauth.json differs from config/grafana/dashboards/silentauth.json; copy it over"
    exit 1
fi

examples=("$chart"/examples/values-*.yaml)
manifests=()
"$helm" lint --strict "$chart"
"$helm" template silentauth "$chart" >"$work/default.yaml"
manifests+=("$work/default.yaml")
for example in "${examples[@]}"; do
    name="$(basename "$example" .yaml)"
    "$helm" lint --strict "$chart" -f "$example"
    "$helm" template silentauth "$chart" -f "$example" >"$work/$name.yaml"
    manifests+=("$work/$name.yaml")
done
# The replay-dlq Job, off in every example.
"$helm" template silentauth "$chart" -f "$chart/examples/values-sasl-ssl.yaml" --set replayDlq.enabled=true \
    --set 'replayDlq.args={--class,upstream_unavailable,--dry-run}' >"$work/replay-dlq-job.yaml"
grep -q '^kind: Job$' "$work/replay-dlq-job.yaml"
manifests+=("$work/replay-dlq-job.yaml")
say "lint and template: default values, ${#examples[@]} examples and the replay-dlq Job ($((SECONDS - started)) s)"

# Bad input: each must fail `helm template` with a message naming the value (and never printing
# a secret value given inline).
bad=0
expect_failure() {
    local names="$1"
    shift
    local out
    if out="$("$helm" template silentauth "$chart" "$@" 2>&1 >/dev/null)"; then
        say "FAIL: helm template $* rendered; it must refuse and name $names"
        bad=1
        return
    fi
    if [[ "$out" == *s3cret* || "$out" == *:pw@* ]]; then
        say "FAIL: helm template $* printed the secret value it refused"
        bad=1
        return
    fi
    local name
    for name in $names; do
        if [[ "$out" != *"$name"* ]]; then
            say "FAIL: helm template $* failed without naming $name: $out"
            bad=1
            return
        fi
    done
    say "refused as it must: $* -> $(grep -m1 'execution error' <<<"$out" | sed 's/.*execution error at ([^)]*): //')"
}
expect_failure "config.worker.shutdown_grace terminationGracePeriodSeconds" --set config.worker.shutdown_grace=45s
expect_failure "config.worker.shutdown_grace terminationGracePeriodSeconds" --set config.worker.shutdown_grace="1m 5s" --set terminationGracePeriodSeconds=60
expect_failure "config.worker.shutdown_grace" --set config.worker.shutdown_grace=soon
expect_failure "replicaCount jobsPartitions" --set replicaCount=7
expect_failure "autoscaling.maxReplicaCount jobsPartitions" --set autoscaling.enabled=true --set autoscaling.maxReplicaCount=8
expect_failure "autoscaling.maxReplicaCount jobsPartitions" -f "$chart/examples/values-plain.yaml" --set jobsPartitions=6
expect_failure "config.clients.default.client_secret credentials.clients.default.existingSecret" --set config.clients.default.client_secret=s3cret
expect_failure "config.clients.default.api_key" --set config.clients.default.api_key=s3cret
expect_failure "sasl.password credentials.kafka.sasl" --set-string 'config.kafka.properties.sasl\.password=s3cret'
expect_failure "ssl.key.pem" --set-string 'config.kafka.properties.ssl\.key\.pem=-----BEGIN'
expect_failure "config.api.base_url" --set config.api.base_url=https://user:pw@api.example.com/v1
expect_failure "config.clients.eu credentials.clients.eu.existingSecret" --set config.clients.eu.client_id=eu
expect_failure "credentials.kafka.tls.certKey credentials.kafka.tls.keyKey" -f "$chart/examples/values-mtls.yaml" --set credentials.kafka.tls.keyKey=
if ((bad)); then
    exit 1
fi

say "building crates/chart-check and the worker binary"
cargo build --quiet -p chart-check --bin chart-check
cargo build --quiet --bin silentauth-worker
KEDA_MODULE_DIR="$keda_dir" cargo test --quiet -p chart-check

crds="$keda_dir/config/crd/bases"
"$target_dir/debug/chart-check" \
    --crd "$crds/keda.sh_scaledobjects.yaml" \
    --crd "$crds/keda.sh_triggerauthentications.yaml" \
    --keda-kafka-scaler "$keda_dir/pkg/scalers/kafka_scaler.go" \
    --unchecked-kind monitoring.coreos.com/v1/ServiceMonitor \
    --check-config "$target_dir/debug/silentauth-worker" \
    --work-dir "$work" \
    "${manifests[@]}"

sm_src=crates/chart-check/servicemonitor
sm_hash="$(cat "$sm_src/go.mod" "$sm_src/go.sum" "$sm_src/main.go" | sha256sum | cut -c1-16)"
sm_check="$cache/servicemonitor-$sm_hash"
if [[ ! -x "$sm_check" ]]; then
    say "building $sm_src (prometheus-operator's Go types)"
    (cd "$sm_src" && go build -o "$sm_check" .)
fi
if [[ -n "$(gofmt -l "$sm_src")" ]]; then
    say "gofmt: $sm_src/main.go is not formatted (gofmt -w $sm_src)"
    exit 1
fi
"$sm_check" "${manifests[@]}"
# The check itself refuses a misspelled field (as crates/chart-check's tests show for the rest).
sed 's/^    - port: admin$/    - prot: admin/' "$work/values-plain.yaml" >"$work/servicemonitor-misspelled.yaml"
if "$sm_check" "$work/servicemonitor-misspelled.yaml" >"$work/servicemonitor-misspelled.out"; then
    say "FAIL: the ServiceMonitor check passed a ServiceMonitor with endpoints[0].prot"
    exit 1
fi
grep -q 'unknown field "prot"' "$work/servicemonitor-misspelled.out"
say "done in $((SECONDS - started)) s"
