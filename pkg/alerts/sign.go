package alerts

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Headers of a tenant webhook delivery.
const (
	HeaderTimestamp = "X-Apeiro-Timestamp" // Unix seconds when the attempt was signed
	HeaderSignature = "X-Apeiro-Signature" // "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body))
	HeaderDelivery  = "X-Apeiro-Delivery"  // event id; the same on every retry, so receivers can deduplicate
	HeaderEvent     = "X-Apeiro-Event"     // event type, e.g. KeyRotated
)

// Sign returns the signature header value for body signed at ts.
func Sign(secret []byte, ts time.Time, body []byte) (timestamp, signature string) {
	timestamp = strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return timestamp, "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify is the receiver's check: the signature matches and the timestamp is within tolerance of now (replays of
// old deliveries are refused).
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("timestamp is not a Unix time")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("timestamp outside the tolerance")
	}
	got, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return errors.New("signature is not sha256=")
	}
	raw, err := hex.DecodeString(got)
	if err != nil {
		return errors.New("signature is not hex")
	}
	_, want := Sign(secret, time.Unix(sec, 0), body)
	wantRaw, _ := hex.DecodeString(strings.TrimPrefix(want, "sha256="))
	if !hmac.Equal(raw, wantRaw) {
		return errors.New("signature does not match")
	}
	return nil
}
