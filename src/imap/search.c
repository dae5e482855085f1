/*
 * search.c - SEARCH and UID SEARCH (RFC 9051 section 6.4.4), with ESEARCH's RETURN (RFC 4731).
 */
#include "imap/internal.h"

ImapRc
imap_cmd_search(ImapSession *s, ImapCmd *c, GString *out)
{
    (void)s;
    return imap_bad(c, out, "SEARCH not yet");
}
