// The oa_live extension messages (docs/protocol.md §3): a BEP 10 message
// family that carries signed live heads, haves over 64-bit sequence
// numbers, piece requests and answers, the live descriptor and chat.
//
// Each message is the payload of one BEP 10 extended message: a type byte
// and a big-endian binary body.  decode_live() is bounded by the layout
// (counts and lengths are checked before anything is allocated) and throws
// openace::Error(PROTO, "wire", "oa_live", "<type name>: <what is wrong>")
// for a malformed message; an unknown type decodes as LiveMsg::Unknown so
// that the caller can ignore it.
//
// Threads: plain values and free functions; call from any thread.
#pragma once

#include "live/live_piece.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace openace::transport::wire {

inline constexpr const char *kLiveExtension = "oa_live";
inline constexpr std::size_t kMaxLiveRanges = 256;
inline constexpr std::size_t kMaxChatText = 512;
inline constexpr std::size_t kMaxChatKey = 1024;
// The largest oa_live payload (a piece with the largest data and signature),
// and so the message length limit of a live connection.
inline constexpr std::uint32_t kMaxLiveMessage =
    static_cast<std::uint32_t>(live::kMaxPieceData + 1 + 8 + 8 + 2 + live::kMaxSignature + 64);

using SeqRange = std::pair<std::uint64_t, std::uint64_t>; // inclusive

// A signed head: "sequence N with this data hash exists" (docs/protocol.md).
struct LiveHead {
    std::uint64_t sequence = 0;
    std::int64_t timestamp_ms = 0;
    std::array<std::uint8_t, 32> data_sha256{};
    std::string signature; // DER, 1..80 bytes
};

struct LiveChat {
    std::string public_key_der; // sender's SubjectPublicKeyInfo, 1..1024 bytes
    std::int64_t timestamp_ms = 0;
    std::string text;           // 1..512 bytes
    std::string signature;      // DER, 1..80 bytes
};

struct LiveMsg {
    enum Type : std::uint8_t {
        Head = 0,
        Have = 1,
        Request = 2,
        Piece = 3,
        Reject = 4,
        DescRequest = 5,
        Desc = 6,
        Chat = 7,
        Unknown = 255, // decode only: a type this version does not know
    };
    Type type = Unknown;
    LiveHead head;                  // Head
    std::vector<SeqRange> ranges;   // Have: 1..256, ascending, not overlapping
    std::uint64_t sequence = 0;     // Request, Reject
    live::LivePiece piece;          // Piece
    std::string descriptor;         // Desc: 1..64 KiB
    LiveChat chat;                  // Chat
};

// "head", "have", "request", "piece", "reject", "desc request", "desc",
// "chat", "unknown".
const char *to_string(LiveMsg::Type t) noexcept;

// Encoders return the whole payload (type byte included).  They throw
// Error(INVAL, "wire", "oa_live", ...) for values decode_live would refuse
// (empty, too many, backward, unsorted or overlapping ranges; an empty or
// over-long signature, key, text or descriptor; text that is not UTF-8; a
// piece without data or with over 8 MiB).
std::string encode_live_head(const LiveHead &h);
std::string encode_live_have(const std::vector<SeqRange> &ranges);
std::string encode_live_request(std::uint64_t sequence);
std::string encode_live_piece(const live::LivePiece &p);
std::string encode_live_reject(std::uint64_t sequence);
std::string encode_live_desc_request();
std::string encode_live_desc(std::string_view descriptor);
std::string encode_live_chat(const LiveChat &c);

// Decodes one payload (see the file comment for errors).  A piece must
// carry at least one byte of data (docs/protocol.md §2) and chat text must be
// well-formed UTF-8; an empty payload (no type byte) throws too.  The
// decoded value owns its bytes.
LiveMsg decode_live(std::string_view payload);

// True when `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF).  Chat text must be.
bool valid_utf8(std::string_view s) noexcept;

} // namespace openace::transport::wire
