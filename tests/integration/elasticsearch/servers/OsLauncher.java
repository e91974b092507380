// Starts one OpenSearch 2 node through codelibs' OpenSearchRunner (Maven Central jars).
// Why a launcher rather than the runner's own main(): the runner only accepts HTTP ports up
// to 9299 (and probes them by connecting), which collides with other servers on a shared
// machine; here the fixture picks free ports itself and passes them in:
//   java ... OsLauncher BASE_DIR HTTP_PORT TRANSPORT_PORT
import org.codelibs.opensearch.runner.OpenSearchRunner;

public class OsLauncher {
    public static void main(String[] args) throws Exception {
        int httpPort = Integer.parseInt(args[1]);
        String transportPort = args[2];
        OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1); // use exactly base + 1, no probing
        runner.onBuild((number, settings) -> {
            settings.put("network.host", "127.0.0.1");
            settings.put("transport.port", transportPort);
            settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
            settings.put("action.destructive_requires_name", "false");
        });
        runner.build("-basePath", args[0], "-numOfNode", "1",
            "-baseHttpPort", Integer.toString(httpPort - 1), "-clusterName", "kubelogs-test");
        System.out.println("kubelogs-test: node started");
        while (!runner.isClosed()) {
            Thread.sleep(5000);
        }
    }
}
