// A real Go client (net/http, the default client): go_client <stream|abort> <baseURL>.
// Prints each SSE line as it arrives; ABORTED after closing the body mid-stream.
package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strings"
)

func main() {
	mode, base := os.Args[1], os.Args[2]
	body := strings.NewReader(`{"model":"fake-model","input":"Say hello","stream":true}`)
	req, err := http.NewRequest("POST", base+"/responses", body)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-client-own-key")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("STATUS", res.StatusCode)
	scanner := bufio.NewScanner(res.Body)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if line == "" {
			continue
		}
		fmt.Println(line)
		if mode == "abort" && strings.HasPrefix(line, "data:") && strings.Contains(line, "output_text.delta") {
			res.Body.Close() // closes the connection: the request is cancelled
			fmt.Println("ABORTED")
			return
		}
	}
	res.Body.Close()
}
