// A 3:1 split between two Java methods with identical bodies: burnA runs three times as many
// iterations as burnB, so (with -XX:CompileCommand=dontinline,JvmSplit::burn*) exactly three quarters
// of the CPU time spent in them is in burnA. Usage: java JvmSplit SECONDS
public class JvmSplit {
    static volatile long sink;

    static long burnA(long n) {
        long s = 1;
        for (long i = 0; i < n; i++) {
            s = s * 6364136223846793005L + i;
        }
        return s;
    }

    static long burnB(long n) {
        long s = 1;
        for (long i = 0; i < n; i++) {
            s = s * 6364136223846793005L + i;
        }
        return s;
    }

    public static void main(String[] args) {
        long end = System.nanoTime() + (long) (Double.parseDouble(args[0]) * 1e9);
        long unit = 200_000;
        while (System.nanoTime() < end) {
            sink += burnA(3 * unit);
            sink += burnB(unit);
        }
    }
}
