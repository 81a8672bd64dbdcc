// Package host loads OpenKCM CMK plugins through the real plugin-sdk catalog,
// the same way the CMK API server does, and hands out typed gRPC clients.
//
// It declares the six plugin types CMK accepts (identity management,
// certificate issuer, keystore management, keystore operations, system
// information, notification) with CMK's constraints: at most one plugin for
// each of the four singleton types, any number of keystore plugins. Plugins
// come from a profile (see LoadProfile), which uses exactly the `plugins:`
// format of CMK's config.yaml, so one file serves both CMK and this project.
//
// A plugin entry without `path:` is resolved against the builtins handed to
// Load (see package builtin); with `path:` the binary is started as a
// go-plugin child process. Both paths go through the identical gRPC, Init and
// Configure sequence of the SDK, which is why contract suites exercise both.
package host
