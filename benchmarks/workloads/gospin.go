// A Go CPU loop for the unwinding benchmarks: main -> work -> burnA / burnB (3:1), for SECONDS.
package main

import (
	"os"
	"strconv"
	"time"
)

var sink uint64

//go:noinline
func burnA(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + uint64(i)
	}
	sink = x
}

//go:noinline
func burnB(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + uint64(i)
	}
	sink = x
}

//go:noinline
func work() {
	burnA(750000)
	burnB(250000)
}

func main() {
	seconds := 60.0
	if len(os.Args) > 1 {
		if v, err := strconv.ParseFloat(os.Args[1], 64); err == nil {
			seconds = v
		}
	}
	end := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	for time.Now().Before(end) {
		work()
	}
}
