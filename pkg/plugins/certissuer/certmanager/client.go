package certmanager

import (
	"context"
	"fmt"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client lists exactly the cert-manager API calls the issuer makes. The production implementation wraps cert-manager's
// generated clientset; unit tests substitute a fake.
type Client interface {
	CreateCertificateRequest(ctx context.Context, cr *cmapi.CertificateRequest) (*cmapi.CertificateRequest, error)
	GetCertificateRequest(ctx context.Context, namespace, name string) (*cmapi.CertificateRequest, error)
	DeleteCertificateRequest(ctx context.Context, namespace, name string) error
	// ListCertificateRequests lists the requests in namespace matching labelSelector (leftover sweep).
	ListCertificateRequests(ctx context.Context, namespace, labelSelector string) ([]cmapi.CertificateRequest, error)
	// IssuerStatus returns the status of the referenced Issuer (in namespace) or ClusterIssuer.
	IssuerStatus(ctx context.Context, namespace string, ref cmmeta.IssuerReference) (*cmapi.IssuerStatus, error)
}

// clientsetClient adapts cert-manager's generated clientset to Client.
type clientsetClient struct{ cs versioned.Interface }

// NewClient wraps a cert-manager clientset.
func NewClient(cs versioned.Interface) Client { return clientsetClient{cs} }

// restConfig loads a kubeconfig file, or the in-cluster service account when path is empty.
func restConfig(path string) (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if path == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	// Each call is small; a hung API server must not hold a tenant request beyond the issuance bound.
	rc.Timeout = 15 * time.Second
	rc.UserAgent = "apeiro-cmk-certissuer-certmanager"
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	return rc, nil
}

func newClientFromKubeconfig(path string) (Client, error) {
	rc, err := restConfig(path)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	cs, err := versioned.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cert-manager client: %w", err)
	}
	return NewClient(cs), nil
}

func (c clientsetClient) CreateCertificateRequest(ctx context.Context, cr *cmapi.CertificateRequest) (*cmapi.CertificateRequest, error) {
	return c.cs.CertmanagerV1().CertificateRequests(cr.Namespace).Create(ctx, cr, metav1.CreateOptions{})
}

func (c clientsetClient) GetCertificateRequest(ctx context.Context, namespace, name string) (*cmapi.CertificateRequest, error) {
	return c.cs.CertmanagerV1().CertificateRequests(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (c clientsetClient) DeleteCertificateRequest(ctx context.Context, namespace, name string) error {
	return c.cs.CertmanagerV1().CertificateRequests(namespace).Delete(ctx, name, metav1.DeleteOptions{})
}

func (c clientsetClient) ListCertificateRequests(ctx context.Context, namespace, selector string) ([]cmapi.CertificateRequest, error) {
	l, err := c.cs.CertmanagerV1().CertificateRequests(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector, Limit: 500})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (c clientsetClient) IssuerStatus(ctx context.Context, namespace string, ref cmmeta.IssuerReference) (*cmapi.IssuerStatus, error) {
	if ref.Kind == "ClusterIssuer" {
		ci, err := c.cs.CertmanagerV1().ClusterIssuers().Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return &ci.Status, nil
	}
	is, err := c.cs.CertmanagerV1().Issuers(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return &is.Status, nil
}
