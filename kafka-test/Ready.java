// Waits until an Apache Kafka cluster answers a metadata request with the expected number of
// brokers. Run by scripts/kafka.sh with the broker's own jars on the classpath:
//   java -cp 'libs/*' Ready.java <bootstrap> <brokers> <timeout-seconds> [client.properties]
// (the properties file: a secured node's admin client settings, TLS and SASL).
// Exit 0 when ready, 1 on timeout (the last error is printed).

import java.io.FileReader;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;

public class Ready {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        int want = Integer.parseInt(args[1]);
        long deadline = System.nanoTime() + Long.parseLong(args[2]) * 1_000_000_000L;
        Properties props = new Properties();
        if (args.length > 3) {
            try (FileReader reader = new FileReader(args[3])) {
                props.load(reader);
            }
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        String last = "no answer";
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                try {
                    int n = admin.describeCluster(new DescribeClusterOptions().timeoutMs(2000))
                            .nodes().get().size();
                    if (n >= want) {
                        System.out.println("ready: " + n + " broker(s) at " + bootstrap);
                        return;
                    }
                    last = n + " of " + want + " brokers registered";
                } catch (Exception e) {
                    last = e.getCause() != null ? e.getCause().toString() : e.toString();
                }
                Thread.sleep(200);
            }
        }
        System.err.println("not ready: " + last);
        System.exit(1);
    }
}
