/*
 * mime.h - an incremental MIME parser for cassmail-imapd: the part tree of a message, and from it
 * FETCH's ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 section 7.5.2, RFC 3501 section 7.4.2) and
 * the octet ranges that BODY[section]<partial> serves (RFC 9051 section 6.4.5).
 *
 * Pure: no I/O, no store. The caller streams the message in chunks cut anywhere
 * (mime_parser_feed), then takes the tree (mime_parser_finish). The parser keeps counters and
 * header octets only, never a body: memory is bounded whatever the message's size (limits below).
 * Bodies are served later from the store, by the ranges mime_section_ranges returns, with no
 * second parse.
 *
 * Line ends: a line ends at LF, with or without a CR before it (stored mail is CRLF; bare LF is
 * tolerated); a bare CR is an ordinary octet, as are NUL and 8-bit octets. Offsets and ranges are
 * octets as stored; BODYSTRUCTURE's sizes count a bare LF as CRLF, as Dovecot does, because a
 * server sends message text with CRLF line ends (cassmail-pop3d does: src/pop3/msgout.c). For
 * CRLF-clean mail (all that cassmail-smtpd stores) the two are the same; for a message with bare
 * LFs a server that converts them must count <partial> origins in converted octets itself.
 *
 * Multipart (RFC 2046 section 5.1): a line that starts with "--" and a boundary of an enclosing
 * multipart ends the open parts up to that multipart (the line end before it is part of the
 * delimiter); "--" after the boundary closes the multipart, whose epilogue follows. As in
 * Dovecot, a boundary matches as a prefix of the line and the innermost multipart's boundary is
 * tried first; a delimiter is recognised in a part's header too (a part with no blank line).
 *
 * Limits (beyond them the parser keeps going; what it does instead, as Dovecot does):
 *   MIME_HEADER_KEEP   header octets kept per part; the rest of a longer header is skipped (its
 *                      fields are not seen by ENVELOPE, BODYSTRUCTURE or HEADER.FIELDS)
 *   MIME_KEEP_TOTAL    header octets kept for the whole message; past it, headers are not kept
 *                      at all (those parts get the RFC 2045 defaults)
 *   MIME_DEPTH_MAX     nesting depth: a multipart or message/rfc822 part this deep is not
 *                      entered; its body, delimiters and all, is opaque (BODYSTRUCTURE shows a
 *                      multipart with one empty text/plain part, a message/rfc822 with an
 *                      all-NIL envelope and an empty text/plain body, as Dovecot does)
 *   MIME_PARTS_MAX     parts in the tree: when a new part would pass it, no delimiter is
 *                      recognised any more and the rest of the message is opaque body of the
 *                      part being parsed (and its ancestors)
 *   MIME_BOUNDARY_MAX  a multipart with a longer boundary (RFC 2046 allows 70) is not entered
 * MimeTree.limited says that one of them took effect.
 */
#ifndef CASSMAIL_IMAP_MIME_H
#define CASSMAIL_IMAP_MIME_H

#include <glib.h>

#define MIME_HEADER_KEEP   (64 * 1024)
#define MIME_KEEP_TOTAL    (4 * 1024 * 1024)
#define MIME_DEPTH_MAX     100
#define MIME_PARTS_MAX     10000
#define MIME_BOUNDARY_MAX  200

#define MIME_ERROR (mime_error_quark())
typedef enum {
    MIME_ERROR_SECTION,    /* a section spec that is not RFC 9051 syntax */
    MIME_ERROR_NO_PART,    /* a part number the message does not have */
} MimeError;
GQuark mime_error_quark(void);

typedef enum {
    MIME_KIND_BASIC,       /* a leaf (text/... included) */
    MIME_KIND_MULTIPART,   /* children between boundary delimiters */
    MIME_KIND_MESSAGE,     /* message/rfc822: one child, the encapsulated message */
} MimeKind;

/* The Content-* fields a part keeps as plain strings (MimePart.content) */
typedef enum {
    MIME_CONTENT_ID,            /* Content-ID (RFC 2045) */
    MIME_CONTENT_DESCRIPTION,   /* Content-Description (RFC 2045) */
    MIME_CONTENT_ENCODING,      /* Content-Transfer-Encoding (RFC 2045): its mechanism only */
    MIME_CONTENT_MD5,           /* Content-MD5 (RFC 1864) */
    MIME_CONTENT_LANGUAGE,      /* Content-Language (RFC 3066) */
    MIME_CONTENT_LOCATION,      /* Content-Location (RFC 2557) */
    MIME_CONTENT_N,
} MimeContent;

typedef struct MimePart MimePart;
struct MimePart {
    MimePart *parent;
    MimePart *children;        /* first child (NULL for a leaf) */
    MimePart *next;            /* next sibling */
    MimeKind kind;
    guint depth;               /* the message is depth 0 */
    gboolean is_message;       /* a message's header (the root, or a message/rfc822's child) */

    /* Offsets in the message: the header is [header_start, body_start), the blank line that
     * ends it included; the body is [body_start, end). blank_start is where that blank line
     * starts (== body_start when the header had none). */
    guint64 header_start, blank_start, body_start, end;
    guint64 body_lines;        /* LFs in the body (IMAP's line count, body-fld-lines) */
    guint64 body_size;         /* the body's octets with each bare LF counted as CRLF (IMAP's
                                * body-fld-octets; end - body_start for CRLF-clean mail) */

    /* The header as stored, up to MIME_HEADER_KEEP octets (header_cut: more was not kept). Kept
     * for message headers only (ENVELOPE, HEADER.FIELDS); a MIME part's is parsed into the
     * fields below and dropped. */
    char *header;
    gsize header_len;
    gboolean header_cut;

    /* Content-* fields (RFC 2045, 2183, 3066, 2557, 1864), values unfolded, the first of each
     * field. type and subtype are as written (compare them case-insensitively) and never NULL
     * (defaults filled in); params are name/value pairs as written, values unquoted, RFC 2231
     * pieces joined; NULL for a field that is absent. */
    char *type, *subtype;
    GPtrArray *params;
    char *content[MIME_CONTENT_N];
    char *disposition;
    GPtrArray *disposition_params;

    char *boundary;            /* while parsing: the delimiter's boundary, NULL once closed */
    guint64 body_lf;           /* while parsing: the message's LF count at body_start */
    guint64 body_bare_lf;      /* ... and its bare LF count */
};

typedef struct {
    MimePart *root;
    guint64 size;              /* octets fed */
    guint parts;
    gboolean limited;          /* a limit of mime.h's header comment took effect */
} MimeTree;

typedef struct MimeParser MimeParser;

/* mime_parser_new - a parser for one message */
MimeParser *mime_parser_new(void);

/* mime_parser_feed - the next LEN octets of the message (any chunking) */
void mime_parser_feed(MimeParser *p, const void *buf, gsize len);

/* mime_parser_header_done - whether the message's own header has been seen whole (a caller that
 * wants only ENVELOPE may stop feeding then) */
gboolean mime_parser_header_done(const MimeParser *p);

/* mime_parser_finish - end of the message: the tree (caller frees with mime_tree_free); the
 * parser is freed and *P set to NULL */
MimeTree *mime_parser_finish(MimeParser **p);

/* mime_parser_free - drop a parser without a tree */
void mime_parser_free(MimeParser **p);

/* mime_parse - a whole message in memory, parsed at once */
MimeTree *mime_parse(const void *msg, gsize len);

void mime_tree_free(MimeTree **t);

/* One field of a header: NAME (without the colon, trailing blanks trimmed) and the raw VALUE
 * after the colon, continuation lines included; [start, end) is the whole field with its line
 * end(s), as offsets into the header text. */
typedef struct {
    const char *name;
    gsize name_len;
    const char *value;
    gsize value_len;
    gsize start, end;
} MimeField;

/* mime_header_next - the field at or after *POS in header H (LEN octets), *POS past it; FALSE at
 * the header's end. Lines that are not fields (no colon) are skipped; so is the blank line. */
gboolean mime_header_next(const char *h, gsize len, gsize *pos, MimeField *f);

/* mime_field_is - whether F's name is NAME (ASCII case ignored) */
gboolean mime_field_is(const MimeField *f, const char *name);

/* mime_envelope - append the ENVELOPE of message part MSG (the root, or a message/rfc822's
 * child) to OUT: "(date subject from sender reply-to to cc bcc in-reply-to message-id)" */
void mime_envelope(const MimePart *msg, GString *out);

/* mime_bodystructure - append BODYSTRUCTURE (EXTENDED) or BODY (not) of PART to OUT */
void mime_bodystructure(const MimePart *part, gboolean extended, GString *out);

/* mime_append_nstring - append S (LEN octets; NULL for NIL) to OUT as an IMAP quoted string, or
 * a literal when it holds CR, LF or 8-bit octets (NUL becomes 0x80, which a literal may hold) */
void mime_append_nstring(GString *out, const char *s, gsize len);

/* One octet range of the message. */
typedef struct {
    guint64 start, len;
} MimeRange;

/* mime_section_ranges - the octets BODY[SECTION] returns, as ranges of the message in order
 * (append to RANGES, a GArray of MimeRange); SECTION is what is between the brackets, e.g. "",
 * "1.2", "1.2.MIME", "TEXT", "2.HEADER.FIELDS.NOT (Subject From)" (case-insensitive). A part
 * number past the parts the message has is MIME_ERROR_NO_PART (IMAP servers answer it with an
 * empty string or NIL); bad syntax is MIME_ERROR_SECTION. HEADER.FIELDS returns each matching
 * field, continuation lines included, then the header's blank line. */
gboolean mime_section_ranges(const MimeTree *t, const char *section, GArray *ranges,
                             GError **error);

/* mime_ranges_partial - cut RANGES down to the octets <ORIGIN.COUNT> of their concatenation
 * (RFC 9051 section 6.4.5's partial fetch); COUNT G_MAXUINT64 for "to the end" */
void mime_ranges_partial(GArray *ranges, guint64 origin, guint64 count);

/* mime_ranges_size - the octets of all RANGES */
guint64 mime_ranges_size(const GArray *ranges);

/* mime_part_find - the part with part number SPEC ("1.2"), or NULL; "" is the root */
const MimePart *mime_part_find(const MimeTree *t, const char *spec);

#endif
