// Lists, adds or removes one principal's ACLs on a secured test node, through its admin (a
// super user). Run by `scripts/kafka.sh acl` with the broker's own jars on the classpath:
//   java -cp 'libs/*' Acl.java <bootstrap> <admin.properties> list <principal>
//   java -cp 'libs/*' Acl.java <bootstrap> <admin.properties> add|remove <principal> acl...
// An acl is TYPE:PATTERN:NAME:OPERATION, e.g. topic:literal:silentauth.jobs:read,
// group:literal:silentauth-worker:read, transactional_id:prefixed:silentauth-worker.:write,
// cluster:literal:kafka-cluster:idempotent_write (every ACL allows, from any host).
// `add` and `remove` return once the broker describes the principal's ACLs with (without) the
// ones given. `list` prints one acl a line, sorted. Exit 1 with the error otherwise.

import java.io.FileReader;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.TreeSet;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;

public class Acl {
    public static void main(String[] args) throws Exception {
        String cmd = args.length > 2 ? args[2] : "";
        if (args.length < 4 || !(cmd.equals("list") || cmd.equals("add") || cmd.equals("remove"))) {
            System.err.println("usage: Acl.java <bootstrap> <admin.properties> list|add|remove <principal> [acl...]");
            System.exit(2);
        }
        Properties props = new Properties();
        try (FileReader reader = new FileReader(args[1])) {
            props.load(reader);
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        String principal = args[3];
        AclBindingFilter mine = new AclBindingFilter(ResourcePatternFilter.ANY,
                new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));
        try (Admin admin = Admin.create(props)) {
            if (!cmd.equals("list")) {
                List<AclBinding> given = new ArrayList<>();
                for (int i = 4; i < args.length; i++) {
                    given.add(parse(principal, args[i]));
                }
                if (cmd.equals("add")) {
                    admin.createAcls(given).all().get();
                } else {
                    List<AclBindingFilter> filters = new ArrayList<>();
                    for (AclBinding b : given) {
                        filters.add(b.toFilter());
                    }
                    admin.deleteAcls(filters).all().get();
                }
                TreeSet<String> want = new TreeSet<>();
                for (AclBinding b : given) {
                    want.add(show(b));
                }
                long deadline = System.nanoTime() + 20_000_000_000L;
                while (true) {
                    TreeSet<String> have = describe(admin, mine);
                    boolean done = cmd.equals("add") ? have.containsAll(want)
                            : want.stream().noneMatch(have::contains);
                    if (done) {
                        break;
                    }
                    if (System.nanoTime() > deadline) {
                        System.err.println("after " + cmd + " the broker still describes " + have);
                        System.exit(1);
                    }
                    Thread.sleep(50);
                }
            } else {
                for (String line : describe(admin, mine)) {
                    System.out.println(line);
                }
            }
        }
    }

    static TreeSet<String> describe(Admin admin, AclBindingFilter filter) throws Exception {
        Collection<AclBinding> bindings = admin.describeAcls(filter).values().get();
        TreeSet<String> out = new TreeSet<>();
        for (AclBinding b : bindings) {
            out.add(show(b));
        }
        return out;
    }

    static AclBinding parse(String principal, String spec) {
        String[] p = spec.split(":", 4);
        if (p.length != 4) {
            throw new IllegalArgumentException("acl '" + spec + "': expected TYPE:PATTERN:NAME:OPERATION");
        }
        ResourcePattern pattern = new ResourcePattern(
                org.apache.kafka.common.resource.ResourceType.fromString(p[0].toUpperCase(Locale.ROOT)),
                p[2], PatternType.fromString(p[1].toUpperCase(Locale.ROOT)));
        AclOperation op = AclOperation.fromString(p[3].toUpperCase(Locale.ROOT));
        if (pattern.resourceType().isUnknown() || pattern.patternType().isUnknown() || op == AclOperation.UNKNOWN) {
            throw new IllegalArgumentException("acl '" + spec + "': unknown type, pattern or operation");
        }
        return new AclBinding(pattern, new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW));
    }

    static String show(AclBinding b) {
        ResourcePattern r = b.pattern();
        return lower(r.resourceType()) + ":" + lower(r.patternType()) + ":" + r.name() + ":"
                + lower(b.entry().operation());
    }

    static String lower(Object o) {
        return o.toString().toLowerCase(Locale.ROOT);
    }
}
