package main

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// serverHist is the webhook's own apeiro_cmk_admission_duration_seconds histogram, summed over every label set:
// cumulative counts per upper bound (seconds). The difference of two scrapes is the distribution of one phase, as
// measured inside the process (from the handler chain's start to its answer, without the network and TLS).
type serverHist map[float64]float64

const serverMetric = "apeiro_cmk_admission_duration_seconds_bucket{"

var scrapeClient = &http.Client{Timeout: 5 * time.Second}

func scrapeHistogram(url string) (serverHist, error) {
	if url == "" {
		return nil, fmt.Errorf("no metrics")
	}
	resp, err := scrapeClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	h := serverHist{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, serverMetric) {
			continue
		}
		i := strings.Index(line, `le="`)
		j := strings.LastIndexByte(line, ' ')
		if i < 0 || j < 0 {
			continue
		}
		leStr := line[i+4:]
		leStr = leStr[:strings.IndexByte(leStr, '"')]
		le, err1 := strconv.ParseFloat(leStr, 64) // "+Inf" parses as +Inf
		v, err2 := strconv.ParseFloat(line[j+1:], 64)
		if err1 == nil && err2 == nil {
			h[le] += v
		}
	}
	return h, s.Err()
}

func (h serverHist) minus(o serverHist) serverHist {
	d := serverHist{}
	for le, v := range h {
		d[le] = v - o[le]
	}
	return d
}

// quantile interpolates linearly inside the bucket holding q (as Prometheus' histogram_quantile does).
func (h serverHist) quantile(q float64) float64 {
	les := make([]float64, 0, len(h))
	for le := range h {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 || h[les[len(les)-1]] == 0 {
		return 0
	}
	rank := q * h[les[len(les)-1]]
	prevLe, prevCount := 0.0, 0.0
	for _, le := range les {
		c := h[le]
		if c >= rank {
			if le > 1e300 { // +Inf: report the largest finite bound
				return prevLe
			}
			if c == prevCount {
				return le
			}
			return prevLe + (le-prevLe)*(rank-prevCount)/(c-prevCount)
		}
		prevLe, prevCount = le, c
	}
	return prevLe
}
