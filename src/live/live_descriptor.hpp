// Live descriptor and content id (DESIGN §2, LiveEngine).
//
// A broadcast is named by its descriptor: the stream's name, the
// broadcaster's public key, the media duration of one piece and the creation
// time, bencoded canonically.  The SHA-1 of that encoding is the content id
// (40 hex digits), which viewers open as "acestream://<id>".  The descriptor
// can be shared as a file, like a .torrent; since the broadcaster keeps its
// key in the state directory, a restarted broadcast with the same name,
// piece duration and creation time keeps its content id.
//
// parse_descriptor accepts only the canonical encoding and no unknown
// fields, so for every accepted input encode() reproduces it byte for byte
// and content_id() equals the SHA-1 of the file as received.
//
// Threads: plain values and free functions without shared state; call from
// any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace openace::live {

using ContentId = std::array<std::uint8_t, 20>;

// Bounds parse_descriptor enforces.
inline constexpr std::size_t kMaxDescriptorBytes = 64 * 1024;
inline constexpr std::size_t kMaxNameBytes = 256;
inline constexpr std::size_t kMaxPublicKeyBytes = 1024;
inline constexpr double kMinPieceDuration = 0.1; // seconds
inline constexpr double kMaxPieceDuration = 60.0;

struct LiveDescriptor {
    std::string name;             // shown to viewers; 1..256 bytes
    std::string public_key_der;   // broadcaster's SubjectPublicKeyInfo DER (ECDSA P-256)
    double piece_duration = 1.0;  // seconds of media per piece; encoded in whole ms
    std::int64_t created = 0;     // unix seconds

    // Canonical bencode:
    //   {"created": i, "name": s, "piece duration ms": i, "public key": s, "version": 1}
    // piece duration ms is piece_duration * 1000 rounded to the nearest ms.
    // Does not validate; parse_descriptor does.
    std::string encode() const;

    // SHA-1 of encode().
    ContentId content_id() const;
};

// Decodes and validates a descriptor.  Throws
// openace::Error(PARSE, "live", "descriptor", "field 'x': ...") naming the
// bad field, or "..." describing the bencode error: over 64 KiB, not a
// canonical bencoded dictionary, an unknown or missing field, name empty or
// over 256 bytes, public key over 1 KiB or not an ECDSA P-256 public key,
// piece duration outside 0.1..60 s, created negative, version not 1.
LiveDescriptor parse_descriptor(std::string_view bencoded);

// 40 lowercase hex digits.
std::string to_hex(const ContentId &id);

// Accepts "<40 hex>", "acestream://<40 hex>" and
// "acestream:?content_id=<40 hex>" (hex digits in either case).  Throws
// openace::Error(INVAL, "live", "content id", "...") quoting (a bounded
// prefix of) the input otherwise.
ContentId parse_content_id(std::string_view text);

} // namespace openace::live
