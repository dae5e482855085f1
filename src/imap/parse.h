/*
 * parse.h - the IMAP command grammar (RFC 9051 section 9) over one complete command.
 *
 * The session (session.c) gathers a command's lines and small literals into one buffer in which
 * each literal appears in its canonical wire form, "{N}" CRLF and then N octets (a
 * non-synchronizing "{N+}" is stored as "{N}"), and the final line without its CRLF. These
 * functions read that buffer front to back: each takes what its rule matches and advances, or
 * returns FALSE and leaves the position where it was. Nothing here allocates beyond the strings
 * it returns; every length is bounded by the buffer.
 */
#ifndef CASSMAIL_IMAP_PARSE_H
#define CASSMAIL_IMAP_PARSE_H

#include <glib.h>

typedef struct {
    const char *buf;
    gsize len;
    gsize pos;
} ImapParser;

/* One range of a sequence set, in message sequence numbers or UIDs; G_MAXUINT32 stands for "*"
 * until imap_range_resolve replaces it. lo <= hi after resolving. */
typedef struct {
    guint32 lo, hi;
} ImapRange;

void imap_parser_init(ImapParser *p, const char *buf, gsize len);
gboolean imap_parse_end(const ImapParser *p);
gboolean imap_parse_sp(ImapParser *p);
gboolean imap_parse_char(ImapParser *p, char c);
/* imap_parse_peek - the next octet, or 0 at the end */
char imap_parse_peek(const ImapParser *p);

/* imap_parse_tag - tag = 1*<ASTRING-CHAR except "+"> */
char *imap_parse_tag(ImapParser *p);
/* imap_parse_atom - 1*ATOM-CHAR */
char *imap_parse_atom(ImapParser *p);
/* imap_parse_string - quoted / literal; *LEN its octets (it may hold NUL when a literal) */
char *imap_parse_string(ImapParser *p, gsize *len);
/* imap_parse_astring - 1*ASTRING-CHAR / string (a NUL makes it fail) */
char *imap_parse_astring(ImapParser *p);
/* imap_parse_list_mailbox - 1*list-char / string (LIST's pattern) */
char *imap_parse_list_mailbox(ImapParser *p);
/* imap_parse_number - number (RFC 9051: up to 2^32-1); nz: not zero */
gboolean imap_parse_number(ImapParser *p, guint32 *n, gboolean nz);
gboolean imap_parse_number64(ImapParser *p, guint64 *n);
/* imap_parse_seqset - sequence-set into RANGES (GArray of ImapRange); "$" is refused */
gboolean imap_parse_seqset(ImapParser *p, GArray *ranges);
/* imap_parse_flag - a flag: "\" atom or atom (keyword); "\*" only when ALLOW_STAR */
char *imap_parse_flag(ImapParser *p, gboolean allow_star);
/* imap_parse_flag_list - "(" [flag *(SP flag)] ")" into FLAGS (strings) */
gboolean imap_parse_flag_list(ImapParser *p, GPtrArray *flags);
/* imap_parse_date - date (d-Mon-yyyy, quoted or not) as days since 1970-01-01 (may be <0) */
gboolean imap_parse_date(ImapParser *p, gint64 *days);
/* imap_parse_date_time - the quoted date-time of APPEND, as seconds since the epoch (UTC) */
gboolean imap_parse_date_time(ImapParser *p, gint64 *t);

/* imap_range_resolve - R with "*" as MAX (the mailbox's highest number, 0 when it is empty),
 * ordered lo <= hi */
ImapRange imap_range_resolve(ImapRange r, guint32 max);
/* imap_seqset_contains - whether N lies in one of RANGES, each resolved with MAX ("n:*" includes
 * MAX whatever n) */
gboolean imap_seqset_contains(const GArray *ranges, guint32 n, guint32 max);

/* imap_month_names - "Jan" .. "Dec"; imap_month - the month (1-12) whose name S starts with
 * (ASCII case ignored), 0 when none */
extern const char imap_month_names[12][4];
guint imap_month(const char *s);

/* imap_days_from_civil - days since 1970-01-01 of Y-M-D (proleptic Gregorian) */
gint64 imap_days_from_civil(gint64 y, guint m, guint d);

#endif
