/* Position-independent, self-contained code for mapbad.c (built with -shared -fPIC -nostdlib). */
void payload_spin(void) {
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 2000000UL; i++) x += i;
}
