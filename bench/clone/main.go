// Command clone is the netsan side of bench/clone/run.sh: it makes the
// golden image and provisions host roots from it with images.Clone, the
// code `netsan serve` and `netsan image clone` run.
//
//	go run ./bench/clone golden PATH SIZE DATA   sparse image with DATA bytes of random data
//	go run ./bench/clone clone GOLDEN DIR N      clone GOLDEN to DIR/host00.img … (N hosts)
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/netsan/netsan/images"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench/clone:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 4 && args[0] == "golden" {
		size, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil {
			return err
		}
		data, err := strconv.ParseInt(args[3], 10, 64)
		if err != nil {
			return err
		}
		return golden(args[1], size, data)
	}
	if len(args) == 4 && args[0] == "clone" {
		n, err := strconv.Atoi(args[3])
		if err != nil {
			return err
		}
		start := time.Now()
		methods := map[images.Method]int{}
		for i := range n {
			m, err := images.Clone(context.Background(), args[1], filepath.Join(args[2], fmt.Sprintf("host%02d.img", i)), 0, nil)
			if err != nil {
				return err
			}
			methods[m]++
		}
		for m, k := range methods {
			fmt.Printf("%d x %s in %.2fs\n", k, m, time.Since(start).Seconds())
		}
		return nil
	}
	return fmt.Errorf("usage: golden PATH SIZE DATA | clone GOLDEN DIR N")
}

// golden writes DATA bytes of random data in 4 MiB pieces spread evenly
// over a sparse file of SIZE bytes, as the images tests do.
func golden(path string, size, data int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	const piece = 4 << 20
	n := data / piece
	stride := (size / n) &^ (1<<20 - 1)
	buf := make([]byte, piece)
	rng := rand.NewChaCha8([32]byte{42})
	for i := int64(0); i < n; i++ {
		_, _ = rng.Read(buf)
		if _, err := f.WriteAt(buf, i*stride); err != nil {
			return err
		}
	}
	return f.Sync()
}
