// goserve: a Go program that serves requests through tskvm's guest API (the VMOD's), in the paused
// style: it calls wait_for_requests_paused from Go, the VM is frozen inside that call, and every
// request resumes as its return, in the same goroutine, with Go's runtime threads alive as they were
// frozen. No cgo: the two calls are Go assembly (hypercall_amd64.s).
//
// Each request: GET /sum?N answers "goroutines 4 sum S" (four goroutines add a quarter of 1..N
// each, through a channel), anything else "hello from Go: METHOD URL". Natively (KVM_NAME unset),
// `goserve URL...` prints the answer to each URL.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// kvmRequest is kvm_api.h's struct kvm_request (104 bytes).
type kvmRequest struct {
	method, url, arg, contentType             uintptr
	methodLen, urlLen, argLen, contentTypeLen uint16
	content, contentLen, headers              uintptr
	numHeaders, infoFlags                     uint16
	reserved0                                 uint32
	prng, reserved1                           [2]uint64
}

func waitForRequestsPaused(req *kvmRequest)
func backendResponse(status int64, ctype, ctypeLen, body, bodyLen uintptr)

// The request the host fills in: a global, so that its address is the same in every request.
var req kvmRequest

func goString(p uintptr, n uint16) string {
	if p == 0 || n == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
}

func answer(method, url string) string {
	path, query, _ := strings.Cut(url, "?")
	if path != "/sum" {
		return fmt.Sprintf("hello from Go: %s %s\n", method, url)
	}
	n, _ := strconv.ParseInt(query, 10, 64)
	parts := make(chan int64, 4)
	var wg sync.WaitGroup
	for i := int64(0); i < 4; i++ {
		wg.Add(1)
		go func(from, to int64) {
			defer wg.Done()
			s := int64(0)
			for k := from; k <= to; k++ {
				s += k
			}
			parts <- s
		}(n*i/4+1, n*(i+1)/4)
	}
	wg.Wait()
	close(parts)
	sum := int64(0)
	for s := range parts {
		sum += s
	}
	return fmt.Sprintf("goroutines 4 sum %d\n", sum)
}

func respond(status int64, body string) {
	ctype, b := []byte("text/plain"), []byte(body)
	backendResponse(status, uintptr(unsafe.Pointer(&ctype[0])), uintptr(len(ctype)), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	runtime.KeepAlive(ctype)
	runtime.KeepAlive(b)
}

func main() {
	if os.Getenv("KVM_NAME") == "" {
		for _, url := range os.Args[1:] {
			fmt.Print(answer("GET", url))
		}
		return
	}
	// The goroutine must stay on the thread that the VM freezes in.
	runtime.LockOSThread()
	for {
		waitForRequestsPaused(&req)
		respond(200, answer(goString(req.method, req.methodLen), goString(req.url, req.urlLen)))
	}
}
