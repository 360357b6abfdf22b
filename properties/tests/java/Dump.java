// Records what Java's Properties.load reads from each file, in order, as the
// Rust literals of tests/java.rs. Usage: javac Dump.java && java Dump latin1|utf8 FILE...
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;

public class Dump {
    static String esc(String s) {
        StringBuilder b = new StringBuilder();
        s.codePoints().forEach(c -> {
            if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') b.append((char) c);
            else if (c >= 0xd800 && c <= 0xdfff) b.append("\\u{fffd}");
            else b.append(String.format("\\u{%x}", c));
        });
        return b.toString();
    }
    public static void main(String[] a) throws Exception {
        // args: mode file...
        for (int i = 1; i < a.length; i++) {
            byte[] bytes = Files.readAllBytes(Paths.get(a[i]));
            List<String> out = new ArrayList<>();
            Properties p = new Properties() {
                @Override public synchronized Object put(Object k, Object v) {
                    out.add("(\"" + esc((String) k) + "\", \"" + esc((String) v) + "\")");
                    return super.put(k, v);
                }
            };
            String res;
            try {
                if (a[0].equals("latin1")) p.load(new ByteArrayInputStream(bytes));
                else p.load(new InputStreamReader(new ByteArrayInputStream(bytes), StandardCharsets.UTF_8));
                res = "Ok(&[" + String.join(", ", out) + "])";
            } catch (IllegalArgumentException e) {
                res = "Err(())";
            }
            System.out.println(res);
        }
    }
}
