package certrenew

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ErrNotFound is returned by Sink.Load when nothing has been stored yet.
var ErrNotFound = errors.New("no certificate stored yet")

// Sink is where a target's key pair lives.
type Sink interface {
	// Load returns the stored PEM certificate chain and private key, or ErrNotFound.
	Load(ctx context.Context) (certPEM, keyPEM []byte, err error)
	// Store replaces both atomically (readers never see a certificate with the other one's key).
	Store(ctx context.Context, certPEM, keyPEM []byte) error
	// Ref is the object renewal Events are attached to, and its namespace.
	Ref() corev1.ObjectReference
	String() string
}

// FileSink stores PEM files (e.g. a volume shared with the component). Each file is written to a temporary and
// renamed, so no reader sees a half-written file; between the two renames the pair may not match for an instant,
// which tls.LoadX509KeyPair reports, so readers that reload on change should retry on a mismatch.
type FileSink struct {
	CertFile, KeyFile string
	// EventNamespace/EventObject name the object Events are attached to (default: none).
	Event corev1.ObjectReference
}

func (s *FileSink) Load(context.Context) ([]byte, []byte, error) {
	c, err := os.ReadFile(s.CertFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	k, err := os.ReadFile(s.KeyFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, ErrNotFound
	}
	return c, k, err
}

func (s *FileSink) Store(_ context.Context, certPEM, keyPEM []byte) error {
	if err := writeAtomic(s.KeyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(s.CertFile, certPEM, 0o644)
}

func (s *FileSink) Ref() corev1.ObjectReference { return s.Event }
func (s *FileSink) String() string              { return "file " + s.CertFile }

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// SecretClient lists the Secret calls SecretSink makes.
type SecretClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error)
	Create(ctx context.Context, s *corev1.Secret, opts metav1.CreateOptions) (*corev1.Secret, error)
	Update(ctx context.Context, s *corev1.Secret, opts metav1.UpdateOptions) (*corev1.Secret, error)
}

// SecretSink stores a kubernetes.io/tls Secret (tls.crt, tls.key, and ca.crt when the chain has a CA). One Update
// replaces both, so mounts and watchers always see a matching pair.
type SecretSink struct {
	Client          SecretClient
	Namespace, Name string
}

// NewSecretSink returns a SecretSink using a clientset.
func NewSecretSink(cs kubernetes.Interface, namespace, name string) *SecretSink {
	return &SecretSink{Client: cs.CoreV1().Secrets(namespace), Namespace: namespace, Name: name}
}

func (s *SecretSink) Load(ctx context.Context) ([]byte, []byte, error) {
	sec, err := s.Client.Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	if len(sec.Data[corev1.TLSCertKey]) == 0 {
		return nil, nil, ErrNotFound
	}
	return sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey], nil
}

func (s *SecretSink) Store(ctx context.Context, certPEM, keyPEM []byte) error {
	data := map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}
	if ca := lastCertPEM(certPEM); ca != nil {
		data["ca.crt"] = ca
	}
	sec, err := s.Client.Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = s.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "apeiro-cmk-certrenew"}},
			Type: corev1.SecretTypeTLS, Data: data,
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	sec.Data = data
	if _, err := s.Client.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

func (s *SecretSink) Ref() corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: s.Namespace, Name: s.Name}
}
func (s *SecretSink) String() string { return "Secret " + s.Namespace + "/" + s.Name }
