package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

func main() {
	fmt.Println("GOMAXPROCS", runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	results := make(chan int, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			results <- n * n
		}(i)
	}
	wg.Wait()
	close(results)
	sum := 0
	for r := range results {
		sum += r
	}
	fmt.Println("sum of squares", sum)
	time.Sleep(10 * time.Millisecond)
	b, _ := json.Marshal(map[string]int{"a": 1, "b": 2})
	fmt.Println(string(b))
	fmt.Printf("%x\n", sha256.Sum256([]byte("hello")))
	if os.Getenv("SHOW_HEAP") != "" {
		// Where Go's heap is: natively at 0xc000000000, the first address its allocator asks for.
		// 300 MiB more of it, in 1 MiB pieces, spans several of its 64 MiB arenas.
		held := make([][]byte, 0, 300)
		for i := 0; i < 300; i++ {
			b := make([]byte, 1<<20)
			b[0], b[len(b)-1] = byte(i), byte(i)
			held = append(held, b)
		}
		sum := 0
		for _, b := range held {
			sum += int(b[0]) + int(b[len(b)-1])
		}
		fmt.Printf("heap at 0x%x.., sum %d\n", uintptr(unsafe.Pointer(&held[0][0]))>>36, sum)
	}
	func() {
		defer func() { fmt.Println("recovered:", recover()) }()
		var m map[string]int
		m["x"] = 1
	}()
}
