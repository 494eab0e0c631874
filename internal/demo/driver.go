package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Request is the ground truth of one driven request.
type Request struct {
	N      int       `json:"n"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Status int       `json:"status"`          // HTTP status, 0 when the request failed
	Offset int64     `json:"offset"`          // Kafka offset goapi reported, -1 when none
	Err    string    `json:"error,omitempty"` // transport error or bad answer
}

// runDriver sends cfg.Requests GET /order/<N> (N = First, First+1, ...)
// with cfg.Concurrency in flight, and writes the truth as JSON to cfg.Out.
func runDriver(ctx context.Context, cfg roleConfig) error {
	if cfg.Requests <= 0 || cfg.Concurrency <= 0 {
		return fmt.Errorf("driver: requests %d and concurrency %d must be positive", cfg.Requests, cfg.Concurrency)
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency,
	}}
	out := make([]Request, cfg.Requests)
	sem := make(chan struct{}, cfg.Concurrency)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = drive(ctx, client, cfg.URL, cfg.First+i)
		}()
	}
	close(start)
	wg.Wait()
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return os.WriteFile(cfg.Out, b, 0o644)
}

func drive(ctx context.Context, client *http.Client, base string, n int) Request {
	r := Request{N: n, Offset: -1, Start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/order/%d", base, n), nil)
	if err != nil {
		r.Err, r.End = err.Error(), time.Now()
		return r
	}
	resp, err := client.Do(req)
	if err != nil {
		r.Err, r.End = err.Error(), time.Now()
		return r
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	r.End, r.Status = time.Now(), resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		r.Err = string(body)
		return r
	}
	if off, err := strconv.ParseInt(resp.Header.Get(OffsetHeader), 10, 64); err == nil {
		r.Offset = off
	} else {
		r.Err = "no " + OffsetHeader + " header"
	}
	return r
}
