// A busy JVM with a realistic amount of compiled code: each round does collection, string, regex,
// stream, sorting and big-number work through the JDK, so the JIT compiles a few thousand methods
// over the first minute (a perf map of a few hundred KB) and keeps recompiling some later.
// Usage: java JvmMix SECONDS
import java.math.BigInteger;
import java.util.*;
import java.util.regex.*;
import java.util.stream.*;

public class JvmMix {
    static volatile long sink;

    static long collections(int n, Random r) {
        Map<String, Integer> m = new HashMap<>();
        TreeMap<Integer, String> t = new TreeMap<>();
        ArrayList<Integer> l = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int v = r.nextInt(10000);
            m.merge("k" + (v % 500), 1, Integer::sum);
            t.put(v, "v" + i);
            l.add(v);
        }
        Collections.sort(l);
        return m.size() + t.firstKey() + l.get(l.size() / 2);
    }

    static long strings(int n) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) {
            sb.append(String.format("%05d-%s;", i, Integer.toHexString(i * 31)));
        }
        String s = sb.toString();
        return s.split(";").length + s.toUpperCase().hashCode() + s.replace('-', '_').indexOf("00042");
    }

    static final Pattern P = Pattern.compile("(\\d+)-([0-9a-f]+)");

    static long regex(int n) {
        long c = 0;
        for (int i = 0; i < n; i++) {
            Matcher m = P.matcher(i + "-" + Integer.toHexString(i));
            if (m.matches()) c += m.group(2).length();
        }
        return c;
    }

    static long streams(int n) {
        return IntStream.range(0, n).boxed().filter(i -> i % 3 != 0).map(i -> i * 7)
                .collect(Collectors.groupingBy(i -> i % 13, Collectors.counting())).values().stream()
                .mapToLong(Long::longValue).sum();
    }

    static long numbers(int n) {
        BigInteger b = BigInteger.ONE;
        for (int i = 1; i < n; i++) b = b.multiply(BigInteger.valueOf(i)).mod(BigInteger.valueOf(1_000_000_007L).pow(3));
        return b.longValue();
    }

    public static void main(String[] args) {
        long end = System.nanoTime() + (long) (Double.parseDouble(args[0]) * 1e9);
        Random r = new Random(42);
        while (System.nanoTime() < end) {
            sink += collections(2000, r) + strings(500) + regex(2000) + streams(5000) + numbers(300);
        }
    }
}
