import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.zip.CRC32;

// The checksum Flyway records for a SQL migration (ChecksumCalculator.calculateChecksumForResource),
// written with the JDK's own BufferedReader and CRC32, for TestFlywayChecksumMatchesJava to check
// FlywayChecksum against. Run it with `java FlywayChecksum.java FILE...`: it prints
// "<checksum> <file>" for each file. With --hash it prints each argument's String.hashCode instead.
public class FlywayChecksum {
    public static void main(String[] args) throws IOException {
        if (args.length > 0 && args[0].equals("--hash")) {
            for (int i = 1; i < args.length; i++) {
                System.out.println(args[i].hashCode() + " " + args[i]);
            }
            return;
        }
        for (String path : args) {
            CRC32 crc32 = new CRC32();
            try (BufferedReader reader = Files.newBufferedReader(Paths.get(path), StandardCharsets.UTF_8)) {
                String line = reader.readLine();
                if (line != null) {
                    if (line.startsWith("\uFEFF")) {
                        line = line.substring(1);
                    }
                    do {
                        crc32.update(line.getBytes(StandardCharsets.UTF_8));
                    } while ((line = reader.readLine()) != null);
                }
            }
            System.out.println((int) crc32.getValue() + " " + path);
        }
    }
}
