#!/usr/bin/env bash
# Apache Kafka (KRaft, from Maven Central jars) on loopback for the integration tests.
#
#   scripts/kafka.sh fetch                      copy the broker's jars (kafka-test/pom.xml) to $KAFKA_LIBS
#   scripts/kafka.sh start [--nodes 1|3] [--security plain|sasl_ssl|mtls] [--dir DIR] [--port PORT]
#                                               format storage, start the node(s), wait until the
#                                               cluster answers a metadata request; prints the
#                                               bootstrap servers and writes them to DIR/bootstrap
#   scripts/kafka.sh ensure [--nodes 1|3] [--security plain|sasl_ssl|mtls] [--dir DIR]
#                                               like start, unless DIR's cluster already runs and
#                                               answers (then only prints its bootstrap servers);
#                                               safe to call from parallel test processes
#   scripts/kafka.sh acl --dir DIR list|add|remove PRINCIPAL [ACL...]
#                                               a secured node's ACLs of PRINCIPAL, through its
#                                               admin: list, add or remove (each ACL
#                                               TYPE:PATTERN:NAME:OPERATION, kafka-test/Acl.java)
#   scripts/kafka.sh stop [--nodes N] [--dir DIR]  SIGTERM every node of DIR, wait, remove nothing
#   scripts/kafka.sh kill-node N [--dir DIR]    SIGKILL node N (broker-failure tests)
#   scripts/kafka.sh start-node N [--dir DIR]   start node N again on its storage and ports
#   scripts/kafka.sh status [--dir DIR]         one line per node: pid, state, ports
#
# DIR defaults to target/kafka/single (1 node) or target/kafka/cluster3 (3 nodes). One node is a
# combined broker+controller with replication factor 1; three nodes are each broker+controller
# with a dynamic quorum, replication factor 3 and min.insync.replicas=2.
# --security sasl_ssl|mtls (one node; DIR defaults to target/kafka/sasl_ssl or target/kafka/mtls)
# starts a secured node: a throw-away CA and broker certificate (SAN 127.0.0.1 and localhost),
# and either a SASL_SSL listener with SCRAM-SHA-512 users `worker` and `admin` (created at format
# time) or an SSL listener that requires a client certificate (principal = the certificate's CN:
# `worker`, `admin`). The StandardAuthorizer is on, with User:admin a super user; the worker's
# principal (User:worker) has no ACL until one is given (`acl add`). The controller listener
# stays PLAINTEXT on loopback (its principal, User:ANONYMOUS, is a super user so the broker can
# register). Besides DIR/bootstrap it writes DIR/client.toml (a worker config: [kafka] brokers
# and [kafka.properties] with the CA and the worker's credentials), DIR/admin.toml (the same
# for the admin principal) and DIR/admin.properties (the admin's Java client properties).
# Environment: KAFKA_LIBS (jar dir, default target/kafka/libs), KAFKA_HEAP (default -Xms256m
# -Xmx768m per node), KAFKA_START_TIMEOUT (seconds, default 120).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$root/kafka-test/pom.xml"
libs="${KAFKA_LIBS:-$root/target/kafka/libs}"
heap="${KAFKA_HEAP:--Xms256m -Xmx768m}"
start_timeout="${KAFKA_START_TIMEOUT:-120}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install $2 (Java 17+ runs the broker; Maven fetches it)"
}

kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom"
}

cmd_fetch() {
    need java "a JDK (e.g. apt-get install openjdk-17-jdk-headless)"
    local version
    version="$(kafka_version)"
    if [[ -f "$libs/kafka_2.13-$version.jar" && -f "$libs/.complete-$version" ]]; then
        return 0
    fi
    need mvn "Maven (e.g. apt-get install maven)"
    echo "kafka.sh: fetching Apache Kafka $version and its dependencies into $libs" >&2
    rm -rf "$libs"
    mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$libs" >&2 || die "mvn could not fetch org.apache.kafka:kafka_2.13:$version (is Maven Central reachable?)"
    touch "$libs/.complete-$version"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_taken() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

java_cmd() {
    # The JVM flags of Kafka's own start scripts, with a heap sized for tests.
    # shellcheck disable=SC2086
    echo java $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
}

write_log4j() {
    cat >"$1" <<'EOF'
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

# write_properties DIR NODE NODES PORT CPORT QUORUM
write_properties() {
    local dir="$1" node="$2" nodes="$3" port="$4" cport="$5" quorum="$6"
    local rf=1 isr=1
    if [[ "$nodes" -gt 1 ]]; then rf=3; isr=2; fi
    cat >"$dir/node$node/server.properties" <<EOF
process.roles=broker,controller
node.id=$node
controller.quorum.bootstrap.servers=$quorum
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/node$node/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=3
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
EOF
}

# make_certificates DIR MODE: a throw-away CA, the broker's certificate (CN=broker, SAN 127.0.0.1
# and localhost; also its client certificate towards its own listener) and, with mtls, the client
# certificates of `worker` (its key encrypted with the worker's password) and `admin`. EC P-256
# keys in PKCS#8 PEM, which both the broker and librdkafka read. Passwords are random per start.
make_certificates() {
    local dir="$1" mode="$2"
    (
        set -e
        cd "$dir"
        umask 077
        openssl rand -hex 16 >.admin-password
        openssl rand -hex 16 >.worker-password
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
            -days 30 -subj "/CN=silentauth-test-ca" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        leaf() {
            local name="$1" ext="$2"
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" \
                -out "$name.csr" -subj "/CN=$name"
            printf '%b' "$ext" >"$name.ext"
            openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
                -extfile "$name.ext" -out "$name.pem"
            rm -f "$name.csr" "$name.ext"
        }
        leaf broker "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
        cat broker.key broker.pem >broker-keystore.pem
        if [[ "$mode" == mtls ]]; then
            leaf worker "extendedKeyUsage=clientAuth\n"
            leaf admin "extendedKeyUsage=clientAuth\n"
            cat admin.key admin.pem >admin-keystore.pem
            openssl pkcs8 -topk8 -v2 aes-256-cbc -in worker.key -out worker.key.enc \
                -passout file:.worker-password
            mv worker.key.enc worker.key
        fi
    ) >"$dir/certificates.log" 2>&1 || { cat "$dir/certificates.log" >&2; die "making the certificates failed"; }
}

# client_toml FILE WHO PROPERTIES: a worker config fragment ([kafka] and [kafka.properties]).
client_toml() {
    local file="$1" who="$2" props="$3" port
    port="$(cut -d: -f2 <"$(dirname "$file")/bootstrap.pending")"
    cat >"$file" <<EOF
# $who's connection to the secured Apache Kafka node in $(dirname "$file") (scripts/kafka.sh):
#   silentauth-worker run --config $file
[kafka]
brokers = "127.0.0.1:$port"

[kafka.properties]
$props
EOF
    chmod 600 "$file"
}

# secure_node DIR MODE PORT: turns node 1's PLAINTEXT listener into SASL_SSL or SSL (client
# certificates required), switches the authorizer on, and writes the client files.
secure_node() {
    local dir="$1" mode="$2" port="$3"
    local props="$dir/node1/server.properties" listener admin_pw worker_pw
    admin_pw="$(cat "$dir/.admin-password")"
    worker_pw="$(cat "$dir/.worker-password")"
    echo "127.0.0.1:$port" >"$dir/bootstrap.pending"
    case "$mode" in
        sasl_ssl) listener=SASL_SSL ;;
        mtls) listener=SSL ;;
    esac
    sed -i -e "s/PLAINTEXT:\/\/127.0.0.1:$port/$listener:\/\/127.0.0.1:$port/g" \
        -e "s/^inter.broker.listener.name=.*/inter.broker.listener.name=$listener/" \
        -e "s/^listener.security.protocol.map=.*/listener.security.protocol.map=CONTROLLER:PLAINTEXT,$listener:$listener/" \
        "$props"
    cat >>"$props" <<EOF
ssl.keystore.type=PEM
ssl.keystore.location=$dir/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
EOF
    if [[ "$mode" == sasl_ssl ]]; then
        cat >>"$props" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
super.users=User:admin;User:ANONYMOUS
EOF
        local who pw
        for who in worker admin; do
            pw="$worker_pw"
            [[ "$who" == admin ]] && pw="$admin_pw"
            client_toml "$dir/$([[ $who == worker ]] && echo client || echo admin).toml" "$who" "\"security.protocol\" = \"SASL_SSL\"
\"sasl.mechanism\" = \"SCRAM-SHA-512\"
\"sasl.username\" = \"$who\"
\"sasl.password\" = \"$pw\"
\"ssl.ca.location\" = \"$dir/ca.pem\""
        done
        cat >"$dir/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
EOF
    else
        cat >>"$props" <<EOF
ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/,DEFAULT
super.users=User:admin;User:broker;User:ANONYMOUS
EOF
        client_toml "$dir/client.toml" worker "\"security.protocol\" = \"SSL\"
\"ssl.ca.location\" = \"$dir/ca.pem\"
\"ssl.certificate.location\" = \"$dir/worker.pem\"
\"ssl.key.location\" = \"$dir/worker.key\"
\"ssl.key.password\" = \"$worker_pw\""
        client_toml "$dir/admin.toml" admin "\"security.protocol\" = \"SSL\"
\"ssl.ca.location\" = \"$dir/ca.pem\"
\"ssl.certificate.location\" = \"$dir/admin.pem\"
\"ssl.key.location\" = \"$dir/admin.key\""
        cat >"$dir/admin.properties" <<EOF
security.protocol=SSL
ssl.keystore.type=PEM
ssl.keystore.location=$dir/admin-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
EOF
    fi
    rm -f "$dir/bootstrap.pending"
    chmod 600 "$dir/admin.properties"
}

# acl --dir DIR list|set PRINCIPAL [ACL...]: a secured node's ACLs, through its admin.
cmd_acl() {
    local dir=""
    if [[ "${1:-}" == --dir ]]; then
        dir="$2"
        shift 2
    fi
    [[ -n "$dir" && -f "$dir/admin.properties" ]] \
        || die "acl: give --dir DIR of a secured node (one with DIR/admin.properties) first"
    # Compiled once (the source launcher would compile it on every call).
    local classes="$root/target/kafka/acl-classes"
    if [[ ! -f "$classes/Acl.class" || "$root/kafka-test/Acl.java" -nt "$classes/Acl.class" ]]; then
        need javac "a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless)"
        mkdir -p "$classes"
        local tmp
        tmp="$(mktemp -d "$classes/.build.XXXXXX")"
        javac -nowarn -cp "$libs/*" -d "$tmp" "$root/kafka-test/Acl.java" >&2
        mv -f "$tmp"/*.class "$classes/"
        rm -rf "$tmp"
    fi
    java -cp "$classes:$libs/*" Acl "$(cat "$dir/bootstrap")" "$dir/admin.properties" "$@"
}

start_node() {
    local dir="$1" node="$2"
    local nd="$dir/node$node"
    local pidfile="$nd/pid"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "node $node of $dir already runs (pid $(cat "$pidfile"))"
    fi
    local port
    port="$(sed -n "s/^listeners=[A-Z_]*:\/\/127.0.0.1:\([0-9]*\),.*/\1/p" "$nd/server.properties")"
    if port_taken "$port"; then
        die "port $port (node $node) is taken by another process; pick another with --port or stop it"
    fi
    # shellcheck disable=SC2046
    nohup $(java_cmd) -Dkafka.logs.dir="$nd/logs" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
        -cp "$libs/*" kafka.Kafka "$nd/server.properties" </dev/null >"$nd/logs/stdout.log" 2>&1 9>&- &
    echo $! >"$pidfile"
}

wait_ready() {
    local dir="$1" nodes="$2"
    local bootstrap
    bootstrap="$(cat "$dir/bootstrap")"
    # shellcheck disable=SC2046
    if ! java -cp "$libs/*" "$root/kafka-test/Ready.java" "$bootstrap" "$nodes" "$start_timeout" $(client_props "$dir") >&2; then
        for nd in "$dir"/node*; do
            echo "---- tail of $nd/logs/server.log ----" >&2
            tail -n 30 "$nd/logs/server.log" 2>/dev/null >&2 || true
            tail -n 10 "$nd/logs/stdout.log" 2>/dev/null >&2 || true
        done
        cmd_stop_dir "$dir"
        die "the broker did not answer a metadata request within ${start_timeout}s (logs above, in $dir)"
    fi
}

default_dir() {
    if [[ "${2:-plain}" != plain ]]; then
        echo "$root/target/kafka/$2"
    elif [[ "$1" == 1 ]]; then
        echo "$root/target/kafka/single"
    else
        echo "$root/target/kafka/cluster3"
    fi
}

# The admin's client properties of a secured node, for Ready.java and Acl.java (nothing if plain).
client_props() {
    if [[ -f "$1/admin.properties" ]]; then echo "$1/admin.properties"; fi
}

check_security() {
    case "$1" in
        plain | sasl_ssl | mtls) ;;
        *) die "--security must be plain, sasl_ssl or mtls, not '$1'" ;;
    esac
    [[ "$1" == plain || "$2" == 1 ]] || die "--security $1 runs one node (--nodes 1), not $2"
}

cmd_ensure() {
    local nodes=1 dir="" security=plain
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --nodes) nodes="$2"; shift 2 ;;
            --dir) dir="$2"; shift 2 ;;
            --security) security="$2"; shift 2 ;;
            *) die "ensure: unknown argument '$1'" ;;
        esac
    done
    check_security "$security" "$nodes"
    [[ -n "$dir" ]] || dir="$(default_dir "$nodes" "$security")"
    need java "a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless)"
    mkdir -p "$(dirname "$dir")"
    exec 9>"$dir.lock"
    flock 9
    local alive=1 pidfile
    [[ -f "$dir/bootstrap" ]] || alive=0
    for ((i = 1; i <= nodes; i++)); do
        pidfile="$dir/node$i/pid"
        if [[ ! -f "$pidfile" ]] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then alive=0; fi
    done
    [[ "$(cat "$dir/security" 2>/dev/null || echo plain)" == "$security" ]] || alive=0
    # shellcheck disable=SC2046
    if [[ $alive == 1 ]] && java -cp "$libs/*" "$root/kafka-test/Ready.java" "$(cat "$dir/bootstrap")" "$nodes" 20 $(client_props "$dir") >/dev/null 2>&1; then
        cat "$dir/bootstrap"
        return 0
    fi
    cmd_stop_dir "$dir"
    cmd_start --nodes "$nodes" --dir "$dir" --security "$security"
}

cmd_start() {
    local nodes=1 dir="" base_port="" security=plain
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --nodes) nodes="$2"; shift 2 ;;
            --dir) dir="$2"; shift 2 ;;
            --port) base_port="$2"; shift 2 ;;
            --security) security="$2"; shift 2 ;;
            *) die "start: unknown argument '$1'" ;;
        esac
    done
    [[ "$nodes" == 1 || "$nodes" == 3 ]] || die "--nodes must be 1 or 3, not '$nodes'"
    check_security "$security" "$nodes"
    [[ -n "$dir" ]] || dir="$(default_dir "$nodes" "$security")"
    need java "a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless)"
    need python3 "Python 3 (used to pick free ports)"
    [[ "$security" == plain ]] || need openssl "OpenSSL (it makes the throw-away certificates)"
    cmd_fetch
    for pidfile in "$dir"/node*/pid; do
        [[ -f "$pidfile" ]] || continue
        if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            die "a cluster already runs in $dir (pid $(cat "$pidfile")); stop it with: scripts/kafka.sh stop --dir $dir"
        fi
    done
    rm -rf "$dir"
    mkdir -p "$dir"
    write_log4j "$dir/log4j2.properties"

    local ports=() cports=() i
    for ((i = 1; i <= nodes; i++)); do
        if [[ -n "$base_port" ]]; then
            ports+=($((base_port + i - 1)))
            cports+=($((base_port + 100 + i - 1)))
        else
            ports+=("$(free_port)")
            cports+=("$(free_port)")
        fi
    done
    for p in "${ports[@]}" "${cports[@]}"; do
        if port_taken "$p"; then die "port $p is taken by another process; pick another with --port"; fi
    done

    local quorum="" bootstrap="" initial="" cluster_id
    cluster_id="$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)"
    for ((i = 1; i <= nodes; i++)); do
        quorum+="${quorum:+,}127.0.0.1:${cports[i - 1]}"
        bootstrap+="${bootstrap:+,}127.0.0.1:${ports[i - 1]}"
    done
    for ((i = 1; i <= nodes; i++)); do
        mkdir -p "$dir/node$i/data" "$dir/node$i/logs"
        write_properties "$dir" "$i" "$nodes" "${ports[i - 1]}" "${cports[i - 1]}" "$quorum"
    done
    local scram=()
    echo "$security" >"$dir/security"
    if [[ "$security" != plain ]]; then
        make_certificates "$dir" "$security"
        secure_node "$dir" "$security" "${ports[0]}"
        if [[ "$security" == sasl_ssl ]]; then
            scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(cat "$dir/.admin-password")]"
                --add-scram "SCRAM-SHA-512=[name=worker,password=$(cat "$dir/.worker-password")]")
        fi
    fi
    if [[ "$nodes" -gt 1 ]]; then
        for ((i = 1; i <= nodes; i++)); do
            initial+="${initial:+,}$i@127.0.0.1:${cports[i - 1]}:$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid)"
        done
    fi
    for ((i = 1; i <= nodes; i++)); do
        local fmt=(format -t "$cluster_id" -c "$dir/node$i/server.properties" "${scram[@]}")
        if [[ "$nodes" == 1 ]]; then fmt+=(--standalone); else fmt+=(--initial-controllers "$initial"); fi
        java -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir/node$i/logs" \
            -cp "$libs/*" kafka.tools.StorageTool "${fmt[@]}" >"$dir/node$i/logs/format.log" 2>&1 \
            || { cat "$dir/node$i/logs/format.log" >&2; die "formatting node $i's storage failed"; }
    done
    echo "$bootstrap" >"$dir/bootstrap"

    local started=$SECONDS
    # All nodes before waiting on any: a broker blocks until a controller majority unfences it.
    for ((i = 1; i <= nodes; i++)); do start_node "$dir" "$i"; done
    wait_ready "$dir" "$nodes"
    echo "kafka.sh: Apache Kafka $(kafka_version), $nodes node(s), security $security, ready in $((SECONDS - started)) s at $bootstrap (dir $dir)" >&2
    echo "$bootstrap"
}

resolve_dir() {
    local dir="" nodes=1 security=plain
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --dir) dir="$2"; shift 2 ;;
            --nodes) nodes="$2"; shift 2 ;;
            --security) security="$2"; shift 2 ;;
            *) die "unknown argument '$1'" ;;
        esac
    done
    [[ -n "$dir" ]] || dir="$(default_dir "$nodes" "$security")"
    echo "$dir"
}

cmd_stop_dir() {
    local dir="$1" pids=() pidfile pid
    for pidfile in "$dir"/node*/pid; do
        [[ -f "$pidfile" ]] || continue
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then pids+=("$pid"); fi
    done
    [[ ${#pids[@]} -gt 0 ]] || return 0
    # Every node at once: a node that waits for a controller majority would otherwise hang.
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local waited=0
    while [[ $waited -lt 30 ]]; do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 1
        waited=$((waited + 1))
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$dir"/node*/pid
    echo "kafka.sh: stopped $dir" >&2
}

cmd_node() {
    local action="$1" node="$2"
    shift 2
    local dir
    dir="$(resolve_dir "$@")"
    [[ -f "$dir/node$node/server.properties" ]] || die "no node $node in $dir"
    case "$action" in
        kill)
            local pid
            pid="$(cat "$dir/node$node/pid" 2>/dev/null)" || die "node $node of $dir is not running"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            rm -f "$dir/node$node/pid"
            ;;
        start) start_node "$dir" "$node" ;;
    esac
}

cmd_status() {
    local dir
    dir="$(resolve_dir "$@")"
    for nd in "$dir"/node*; do
        [[ -d "$nd" ]] || continue
        local state="stopped" pid="-"
        if [[ -f "$nd/pid" ]]; then
            pid="$(cat "$nd/pid")"
            kill -0 "$pid" 2>/dev/null && state="running"
        fi
        echo "$(basename "$nd") $state pid=$pid $(grep '^listeners=' "$nd/server.properties")"
    done
}

case "${1:-}" in
    fetch) shift; cmd_fetch ;;
    start) shift; cmd_start "$@" ;;
    ensure) shift; cmd_ensure "$@" ;;
    stop) shift; cmd_stop_dir "$(resolve_dir "$@")" ;;
    kill-node) [[ $# -ge 2 ]] || die "kill-node N"; shift; n="$1"; shift; cmd_node kill "$n" "$@" ;;
    start-node) [[ $# -ge 2 ]] || die "start-node N"; shift; n="$1"; shift; cmd_node start "$n" "$@" ;;
    status) shift; cmd_status "$@" ;;
    acl) shift; cmd_acl "$@" ;;
    *) sed -n '2,36p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
