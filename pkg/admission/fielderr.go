package admission

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// Handlers collect what they refuse as a field.ErrorList, Kubernetes' own vocabulary for field errors, and add the
// rule ID (rules.go, pkg/hierarchy) as the error's Origin, the field the API machinery keeps for "which check
// produced this". denyErrs is the one adapter from there to a denial: the rule ID becomes the cause type
// "FieldValueInvalid:<rule>", the field path the cause's field and the detail its message.

// invalid is a refused field carrying its rule. The bad value is never echoed from here (messages quote a
// truncated value where it helps): hostile values must not bloat denials and logs.
func invalid(path, rule, format string, args ...any) *field.Error {
	return &field.Error{Type: field.ErrorTypeInvalid, Field: path, BadValue: field.OmitValueType{}, Detail: fmt.Sprintf(format, args...), Origin: rule}
}

// denyErrs answers a request with every refused field of errs.
func denyErrs(kind, name string, errs field.ErrorList) admission.Response {
	out := make([]FieldError, 0, len(errs))
	for _, e := range errs {
		out = append(out, FieldError{Field: e.Field, Rule: e.Origin, Msg: e.Detail})
	}
	return deny(kind, name, out...)
}

// denyOne answers with a single refused field.
func denyOne(kind, name string, e *field.Error) admission.Response {
	return denyErrs(kind, name, field.ErrorList{e})
}

// fromRule turns a hierarchy rule violation into a refused field (path is used when the rule names none). ok is
// false for any other error (a failure to judge, not a verdict).
func fromRule(err error, path string) (*field.Error, bool) {
	var re *hierarchy.RuleError
	if !errors.As(err, &re) {
		return nil, false
	}
	if re.Field != "" {
		path = re.Field
	}
	return invalid(path, re.Rule, "%s", re.Msg), true
}
