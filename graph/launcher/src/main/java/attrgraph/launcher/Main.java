package attrgraph.launcher;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;

/**
 * Runs a Neo4j Community DBMS with only the Bolt connector, bound to one address.
 *
 * <p>Arguments: {@code <home-dir> <host> <port> <password-file> <pagecache-mb> [<extra-config-file>]}.
 * The optional extra file holds further Neo4j settings, one {@code name=value} a line (e.g. TLS on
 * Bolt: {@code dbms.ssl.policy.bolt.*}, {@code server.bolt.tls_level}); the ones above win over it.
 * The password is read from a file (never the command line, where {@code ps} would show it)
 * and set for the {@code neo4j} user. When Bolt is up, the line {@code ATTRGRAPH_NEO4J_READY}
 * is printed; SIGTERM shuts the DBMS down cleanly.
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 5 && args.length != 6) {
            System.err.println("usage: Main <home-dir> <host> <port> <password-file> <pagecache-mb> [<extra-config-file>]");
            System.exit(2);
        }
        Path home = Path.of(args[0]);
        String host = args[1];
        int port = Integer.parseInt(args[2]);
        String password = Files.readString(Path.of(args[3]), StandardCharsets.UTF_8).strip();
        long pageCacheBytes = Long.parseLong(args[4]) * 1024L * 1024L;

        DatabaseManagementServiceBuilder builder = new DatabaseManagementServiceBuilder(home);
        if (args.length == 6) {
            builder.loadPropertiesFromFile(Path.of(args[5]));
        }
        DatabaseManagementService dbms = builder
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(host, port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress(host, port))
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(GraphDatabaseSettings.pagecache_memory, pageCacheBytes)
                .build();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            dbms.shutdown();
            stopped.countDown();
        }, "attrgraph-neo4j-shutdown"));

        try {
            dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
        } catch (org.neo4j.graphdb.QueryExecutionException e) {
            // A restart over existing data: the password is already this one. Anything else is an error.
            if (e.getMessage() == null || !e.getMessage().contains("Old password and new password cannot be the same")) {
                throw e;
            }
        }

        System.out.println("ATTRGRAPH_NEO4J_READY " + host + ":" + port);
        System.out.flush();
        stopped.await();
    }
}
