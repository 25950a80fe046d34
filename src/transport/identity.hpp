// An engine's persistent identity for TLS between OpenAce peers (DESIGN §5).
//
// Each engine keeps an ECDSA P-256 key and a self-signed certificate for it in
// its state directory.  Its BitTorrent peer id is derived from the public key,
// so a peer that completes a TLS handshake (which proves it holds the key
// behind its certificate) can be checked against the peer id it announces:
//
//   if (peer_id_for_key(session.peer_public_key_der()) != announced_id) close();
//
// Plain BitTorrent peers keep their ordinary, unchecked ids.
//
// Threading: free functions without shared state; call from any thread.
// load_or_create_identity does blocking file I/O, so call it at start-up or
// from a worker, not from a loop callback.
#pragma once

#include "transport/peer_address.hpp"

#include <string>
#include <string_view>

namespace openace::transport {

struct Identity {
    std::string key_pem;        // private key (PEM, SEC1 "EC PRIVATE KEY")
    std::string cert_pem;       // self-signed X.509 certificate (PEM), CN = "openace-<peer id hex>",
                                // valid 20 years
    std::string public_key_der; // SubjectPublicKeyInfo DER of the key
    PeerId peer_id{};           // peer_id_for_key(public_key_der)
};

// Loads <dir>/identity.key and <dir>/identity.crt, or creates both (ECDSA
// P-256) when the key does not exist.  The directory is created (mode 0700)
// when missing; files are written to "<name>.tmp" with mode 0600, synced and
// renamed into place, so a crash never leaves a half-written key.  A key
// without a usable certificate (missing, unreadable, for another key, or
// expired) gets a fresh certificate for the existing key; a certificate
// without a key is replaced together with a new key.
//
// Throws openace::Error(IO, "identity", "load", "<path>: <why>") naming the
// path when a file or the directory cannot be read or written, and
// Error(PARSE, "identity", "load", "<path>: ...") when the key file is not a
// PEM ECDSA P-256 private key (it is never overwritten: a lost key means a
// new peer id, so that is left to the operator).
Identity load_or_create_identity(const std::string &dir);

// "-OA0100-" followed by the first 12 bytes of SHA-256(public_key_der):
// 20 bytes, in the Azureus style other clients recognise.
PeerId peer_id_for_key(std::string_view public_key_der);

// True when the id starts with "-OA" (an OpenAce engine, which then must
// prove it over TLS).
bool is_openace_peer_id(const PeerId &id);

} // namespace openace::transport
