/*
 * TokenOracle - Cassandra 0.7.0's own RandomPartitioner, for test_tokens.py.
 * Reads one key per line on stdin (hex-encoded octets), prints "hex token" per line, using
 * org.apache.cassandra.dht.RandomPartitioner from the cached jar.
 *   java -cp '.cache/cassandra/lib/*' test/e2e/TokenOracle.java < keys
 */
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import org.apache.cassandra.dht.RandomPartitioner;

public class TokenOracle {
    public static void main(String[] args) throws Exception {
        RandomPartitioner p = new RandomPartitioner();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        StringBuilder out = new StringBuilder();
        for (String line; (line = in.readLine()) != null; ) {
            line = line.trim();
            byte[] key = new byte[line.length() / 2];
            for (int i = 0; i < key.length; i++)
                key[i] = (byte) Integer.parseInt(line.substring(2 * i, 2 * i + 2), 16);
            out.append(line).append(' ').append(p.getToken(ByteBuffer.wrap(key)).token).append('\n');
        }
        System.out.print(out);
    }
}
