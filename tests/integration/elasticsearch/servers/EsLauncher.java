// Starts one Elasticsearch 8 node from the Maven Central jars (no distribution download is
// reachable from the test machines). The test fixture compiles this file, puts the server
// and transport-netty4 jars on the module path and runs:
//   java ... EsLauncher HOME HTTP_PORT TRANSPORT_PORT
// HOME/modules/transport-netty4/plugin-descriptor.properties must exist (the fixture
// writes it without `modulename=`, so the plugin class is taken from the module path).
import java.nio.file.Path;
import java.util.Map;
import java.util.Set;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.PluginsLoader;

public class EsLauncher {
    public static void main(String[] args) throws Exception {
        Path home = Path.of(args[0]).toAbsolutePath();
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "kubelogs-test")
            .put("node.name", "node-1")
            .put("network.host", "127.0.0.1")
            .put("http.port", Integer.parseInt(args[1]))
            .put("transport.port", Integer.parseInt(args[2]))
            .put("discovery.type", "single-node")
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.destructive_requires_name", false)
            .build();
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName("node-1");
        LogConfigurator.configureWithoutConfig(settings);
        Environment env = new Environment(settings, home.resolve("config"));
        PluginsLoader loader = PluginsLoader.createPluginsLoader(
            PluginsLoader.loadModulesBundles(env.modulesDir()), Set.of(), Map.of());
        Node node = new Node(env, loader).start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                // exiting anyway
            }
        }));
        System.out.println("kubelogs-test: node started");
        Thread.currentThread().join();
    }
}
