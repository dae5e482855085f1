/*
 * test-imap-mime.c - the MIME parser of cassmail-imapd (src/imap/mime.h): ENVELOPE, BODY and
 * BODYSTRUCTURE of real-world shaped messages, octet for octet; the same tree whatever the
 * chunks the message arrives in (whole, one octet at a time, random cuts); BODY[section] ranges;
 * the limits that bound memory; section syntax.
 *
 * The expected ENVELOPE/BODY/BODYSTRUCTURE strings are what Dovecot's imap answers for the same
 * messages (test/e2e/test_imap_mime.py checks that against a private Dovecot), but for the
 * deliberate differences listed in src/imap/mime.c, which appear here as this parser's answer.
 * The messages are those of the fuzzing seed corpus test/fuzz/corpus/mime.
 */
#include <string.h>

#include "imap/mime.h"

static const char MSG_SIMPLE_TEXT[] =
    "From: Anne Example <anne@example.org>\r\n"
    "To: pete@example.net\r\n"
    "Subject: Lunch\r\n"
    "Date: Wed, 2 Dec 2026 06:00:00 +0000\r\n"
    "Message-ID: <1@example.org>\r\n"
    "\r\n"
    "Shall we meet at noon?\r\n"
    "-- \r\n"
    "Anne\r\n";

static const char MSG_MIXED_ALTERNATIVE_ATTACHMENT[] =
    "From: \"Example, Anne\" <anne@example.org>\r\n"
    "To: Pete <pete@example.net>, \"Q. Public\" <q@example.com>\r\n"
    "Cc: team: a@example.org, b@example.org;\r\n"
    "Subject: Report with attachment\r\n"
    "Date: Wed, 2 Dec 2026 06:00:00 +0000\r\n"
    "Message-ID: <2@example.org>\r\n"
    "In-Reply-To: <1@example.org>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer-b\"\r\n"
    "\r\n"
    "This is a multi-part message in MIME format.\r\n"
    "--outer-b\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Hello =E2=80=94 the report is attached.\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=\"utf-8\"\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "<p>Hello, the report is attached.</p>\r\n"
    "--inner--\r\n"
    "--outer-b\r\n"
    "Content-Type: application/pdf; name=\"report.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"report.pdf\"; size=12\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-ID: <part3@example.org>\r\n"
    "Content-Description: The monthly report\r\n"
    "Content-Language: en, de\r\n"
    "Content-Location: http://example.org/report.pdf\r\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
    "\r\n"
    "JVBERi0xLjQKJcfs\r\n"
    "--outer-b--\r\n"
    "Epilogue text.\r\n";

static const char MSG_FORWARDED_RFC822[] =
    "From: pete@example.net\r\n"
    "To: anne@example.org\r\n"
    "Subject: Fwd: Lunch\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=b1\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "See below.\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: message/rfc822\r\n"
    "Content-Disposition: inline\r\n"
    "\r\n"
    "From: Anne Example <anne@example.org>\r\n"
    "To: pete@example.net\r\n"
    "Subject: Lunch\r\n"
    "Date: Wed, 2 Dec 2026 06:00:00 +0000\r\n"
    "Message-ID: <1@example.org>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/alternative; boundary=b2\r\n"
    "\r\n"
    "--b2\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "noon?\r\n"
    "--b2\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<b>noon?</b>\r\n"
    "--b2--\r\n"
    "\r\n"
    "--b1--\r\n";

static const char MSG_RFC822_SINGLE[] =
    "From: a@example.org\r\n"
    "Subject: wrapped\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: b@example.org\r\n"
    "Subject: inner\r\n"
    "\r\n"
    "inner body\r\n"
    "two lines\r\n";

static const char MSG_BOUNDARY_NEVER_SEEN[] =
    "From: a@example.org\r\n"
    "Subject: no boundary match\r\n"
    "Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
    "\r\n"
    "--ABC\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "text\r\n"
    "--ABC--\r\n";

static const char MSG_PREAMBLE_EPILOGUE[] =
    "From: a@example.org\r\n"
    "Subject: preamble and epilogue\r\n"
    "Content-Type: multipart/mixed; boundary=pb\r\n"
    "\r\n"
    "preamble line 1\r\n"
    "preamble line 2\r\n"
    "--pb\r\n"
    "\r\n"
    "part one, no header\r\n"
    "--pb\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "\r\n"
    "part two\r\n"
    "--pb--\r\n"
    "epilogue 1\r\n"
    "epilogue 2\r\n";

static const char MSG_ENCODED_WORDS[] =
    "From: =?UTF-8?B?QW5uZSDDhHhhbXBsZQ==?= <anne@example.org>\r\n"
    "To: =?ISO-8859-1?Q?Andr=E9?= <andre@example.net>\r\n"
    "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and\r\n"
    " =?UTF-8?Q?more?=\r\n"
    "Date: Wed, 2 Dec 2026 06:00:00 +0000\r\n"
    "\r\n"
    "Body.\r\n";

static const char MSG_EIGHT_BIT_HEADER[] =
    "From: J\303\266rg <joerg@example.org>\r\n"
    "Subject: Gr\303\274\303\237e \"quoted\" \\ backslash\r\n"
    "To: pete@example.net\r\n"
    "\r\n"
    "Body with 8-bit: \303\274n\303\257c\303\266d\303\251\r\n";

static const char MSG_GROUPS_AND_OBSOLETE[] =
    "From: Pete(A comment)@(another)example.net (Pete Comment)\r\n"
    "Sender: <@relay1.example,@relay2.example:pete@example.net>\r\n"
    "Reply-To:\r\n"
    "To: undisclosed-recipients:;\r\n"
    "Cc: \"john doe\"@example.com, Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test"
    ">\r\n"
    "Bcc: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, last@example.com\r\n"
    "Subject: addresses\r\n"
    "Message-ID:   <abc@example.net>  \r\n"
    "\r\n"
    "x\r\n";

static const char MSG_EMPTY_BODY[] =
    "From: a@example.org\r\n"
    "Subject: empty body\r\n"
    "\r\n";

static const char MSG_HEADER_ONLY[] =
    "From: a@example.org\r\n"
    "Subject: header only, no blank line";

static const char MSG_MULTIPART_NO_BOUNDARY[] =
    "From: a@example.org\r\n"
    "Subject: multipart without boundary\r\n"
    "Content-Type: multipart/mixed\r\n"
    "\r\n"
    "--x\r\n"
    "text\r\n";

static const char MSG_DIGEST[] =
    "From: list@example.org\r\n"
    "Subject: digest\r\n"
    "Content-Type: multipart/digest; boundary=d\r\n"
    "\r\n"
    "--d\r\n"
    "\r\n"
    "From: a@example.org\r\n"
    "Subject: first\r\n"
    "\r\n"
    "one\r\n"
    "--d\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "not a message\r\n"
    "--d\r\n"
    "\r\n"
    "From: b@example.org\r\n"
    "Subject: second\r\n"
    "\r\n"
    "two\r\n"
    "--d--\r\n";

static const char MSG_BARE_LF[] =
    "From: a@example.org\n"
    "Subject: bare LF\n"
    "Content-Type: multipart/mixed; boundary=lf\n"
    "\n"
    "--lf\n"
    "Content-Type: text/plain\n"
    "\n"
    "line\n"
    "--lf--\n";

static const char MSG_NUL_AND_8BIT[] =
    "From: a@example.org\r\n"
    "Subject: nul \000 byte \377\r\n"
    "\r\n"
    "body \000\376\377\r\n";

static const char MSG_MALFORMED_CONTENT_TYPE[] =
    "From: a@example.org\r\n"
    "Subject: malformed\r\n"
    "Content-Type: TEXT (a comment) / HTML ; CHARSET = \"UTF-8\" (c) ; format=flowed;;junk\r\n"
    "Content-Transfer-Encoding: QUOTED-PRINTABLE (comment)\r\n"
    "\r\n"
    "body\r\n";

static const char MSG_BAD_CONTENT_TYPE[] =
    "From: a@example.org\r\n"
    "Subject: bad type\r\n"
    "Content-Type: text\r\n"
    "\r\n"
    "body\r\n";

static const char MSG_RFC822_BASE64[] =
    "From: a@example.org\r\n"
    "Subject: encoded message\r\n"
    "Content-Type: multipart/mixed; boundary=e\r\n"
    "\r\n"
    "--e\r\n"
    "Content-Type: message/rfc822\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "RnJvbTogYkBleGFtcGxlLm9yZw0KDQp4DQo=\r\n"
    "--e--\r\n";

static const char MSG_UNTERMINATED_MULTIPART[] =
    "From: a@example.org\r\n"
    "Subject: no close delimiter\r\n"
    "Content-Type: multipart/mixed; boundary=u\r\n"
    "\r\n"
    "--u\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "first\r\n"
    "--u\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "second, then the message ends";

static const char MSG_DELIMITER_IN_PART_HEADER[] =
    "From: a@example.org\r\n"
    "Subject: part without blank line\r\n"
    "Content-Type: multipart/mixed; boundary=h\r\n"
    "\r\n"
    "--h\r\n"
    "Content-Type: text/plain\r\n"
    "--h\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "real\r\n"
    "--h--\r\n";

static const char MSG_EMPTY_MULTIPART[] =
    "From: a@example.org\r\n"
    "Subject: empty multipart\r\n"
    "Content-Type: multipart/alternative; boundary=z\r\n"
    "\r\n"
    "--z--\r\n";

static const char MSG_RFC2231_PARAMS[] =
    "From: a@example.org\r\n"
    "Subject: rfc2231\r\n"
    "Content-Type: multipart/mixed; boundary=r\r\n"
    "\r\n"
    "--r\r\n"
    "Content-Type: application/octet-stream; name*=utf-8''na%C3%AFve.bin\r\n"
    "Content-Disposition: attachment;\r\n"
    " filename*0=\"long\";\r\n"
    " filename*1=\"name.bin\"\r\n"
    "\r\n"
    "data\r\n"
    "--r--\r\n";

static const char MSG_SENDER_REPLYTO[] =
    "From: a@example.org\r\n"
    "Sender: secretary@example.org\r\n"
    "Reply-To: list@example.org, \"Other\" <o@example.org>\r\n"
    "To: b@example.org\r\n"
    "Subject:\r\n"
    "Date:\r\n"
    "\r\n"
    "body\r\n";

static const char MSG_NESTED_DEEP[] =
    "From: a@example.org\r\n"
    "Subject: nested\r\n"
    "Content-Type: multipart/mixed; boundary=l1\r\n"
    "\r\n"
    "--l1\r\n"
    "Content-Type: multipart/mixed; boundary=l2\r\n"
    "\r\n"
    "--l2\r\n"
    "Content-Type: multipart/mixed; boundary=l3\r\n"
    "\r\n"
    "--l3\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "deep\r\n"
    "--l1--\r\n"
    "after\r\n";

static const char MSG_PREFIX_BOUNDARIES[] =
    "From: a@example.org\r\n"
    "Subject: boundary prefixes and padding\r\n"
    "Content-Type: multipart/mixed; boundary=\"=_b\"\r\n"
    "\r\n"
    "--=_b   \r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "one\r\n"
    "--=_bx\r\n"
    "still one?\r\n"
    "--=_b--  \r\n";

/* two Subject fields (the last counts) and two Content-Type fields (the first does); blank
 * lines right before delimiters (their line end is the delimiter's) */
static const char MSG_BLANK_LINE_BEFORE_DELIMITER[] =
    "From: a@b.c\r\n"
    "Subject: s1\r\n"
    "Subject: s2\r\n"
    "Content-Type: multipart/mixed; boundary=b\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "--b\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "From: x@y\r\n"
    "\r\n"
    "--b--\r\n";

typedef struct {
    const char *name;
    gsize len;
    const char *msg;
    const char *envelope, *bodystructure, *body;
} Case;

static const Case cases[] = {
    { "simple-text", sizeof(MSG_SIMPLE_TEXT) - 1, MSG_SIMPLE_TEXT,
      "(\"Wed, 2 Dec 2026 06:00:00 +0000\" \"Lunch\" ((\"Anne Example\" NIL \"anne\" \"example.or"
      "g\")) ((\"Anne Example\" NIL \"anne\" \"example.org\")) ((\"Anne Example\" NIL \"anne\" \""
      "example.org\")) ((NIL NIL \"pete\" \"example.net\")) NIL NIL NIL \"<1@example.org>\")",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 35 3 NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 35 3)" },
    { "mixed-alternative-attachment", sizeof(MSG_MIXED_ALTERNATIVE_ATTACHMENT) - 1, MSG_MIXED_ALTERNATIVE_ATTACHMENT,
      "(\"Wed, 2 Dec 2026 06:00:00 +0000\" \"Report with attachment\" ((\"Example, Anne\" NIL \"a"
      "nne\" \"example.org\")) ((\"Example, Anne\" NIL \"anne\" \"example.org\")) ((\"Example, An"
      "ne\" NIL \"anne\" \"example.org\")) ((\"Pete\" NIL \"pete\" \"example.net\")(\"Q. Public\""
      " NIL \"q\" \"example.com\")) ((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"example.org\")(NIL NI"
      "L \"b\" \"example.org\")(NIL NIL NIL NIL)) NIL \"<1@example.org>\" \"<2@example.org>\")",
      "(((\"text\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"quoted-printable\" 39 0 NIL NIL NI"
      "L NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 37 0 NIL NIL NIL NIL) \""
      "alternative\" (\"boundary\" \"inner\") NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"re"
      "port.pdf\") \"<part3@example.org>\" \"The monthly report\" \"base64\" 16 \"Q2hlY2sgSW50ZWd"
      "yaXR5IQ==\" (\"attachment\" (\"filename\" \"report.pdf\" \"size\" \"12\")) (\"en\" \"de\")"
      " \"http://example.org/report.pdf\") \"mixed\" (\"boundary\" \"outer-b\") NIL NIL NIL)",
      "(((\"text\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"quoted-printable\" 39 0)(\"text\" "
      "\"html\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 37 0) \"alternative\")(\"application\" \""
      "pdf\" (\"name\" \"report.pdf\") \"<part3@example.org>\" \"The monthly report\" \"base64\" "
      "16) \"mixed\")" },
    { "forwarded-rfc822", sizeof(MSG_FORWARDED_RFC822) - 1, MSG_FORWARDED_RFC822,
      "(NIL \"Fwd: Lunch\" ((NIL NIL \"pete\" \"example.net\")) ((NIL NIL \"pete\" \"example.net\""
      ")) ((NIL NIL \"pete\" \"example.net\")) ((NIL NIL \"anne\" \"example.org\")) NIL NIL NIL N"
      "IL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1 NIL NIL NIL NIL)(\"m"
      "essage\" \"rfc822\" NIL NIL NIL \"7bit\" 311 (\"Wed, 2 Dec 2026 06:00:00 +0000\" \"Lunch\""
      " ((\"Anne Example\" NIL \"anne\" \"example.org\")) ((\"Anne Example\" NIL \"anne\" \"examp"
      "le.org\")) ((\"Anne Example\" NIL \"anne\" \"example.org\")) ((NIL NIL \"pete\" \"example."
      "net\")) NIL NIL NIL \"<1@example.org>\") ((\"text\" \"plain\" (\"charset\" \"us-ascii\") N"
      "IL NIL \"7bit\" 5 0 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL "
      "\"7bit\" 12 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b2\") NIL NIL NIL) 17 NIL ("
      "\"inline\" NIL) NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 1)(\"message\" \"rfc82"
      "2\" NIL NIL NIL \"7bit\" 311 (\"Wed, 2 Dec 2026 06:00:00 +0000\" \"Lunch\" ((\"Anne Exampl"
      "e\" NIL \"anne\" \"example.org\")) ((\"Anne Example\" NIL \"anne\" \"example.org\")) ((\"A"
      "nne Example\" NIL \"anne\" \"example.org\")) ((NIL NIL \"pete\" \"example.net\")) NIL NIL "
      "NIL \"<1@example.org>\") ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
      "5 0)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 12 0) \"alternative\") "
      "17) \"mixed\")" },
    { "rfc822-single", sizeof(MSG_RFC822_SINGLE) - 1, MSG_RFC822_SINGLE,
      "(NIL \"wrapped\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL"
      " NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 62 (NIL \"inner\" ((NIL NIL \"b\" \"example.o"
      "rg\")) ((NIL NIL \"b\" \"example.org\")) ((NIL NIL \"b\" \"example.org\")) NIL NIL NIL NIL"
      " NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 23 2 NIL NIL NIL NIL"
      ") 5 NIL NIL NIL NIL)",
      "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 62 (NIL \"inner\" ((NIL NIL \"b\" \"example.o"
      "rg\")) ((NIL NIL \"b\" \"example.org\")) ((NIL NIL \"b\" \"example.org\")) NIL NIL NIL NIL"
      " NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 23 2) 5)" },
    { "boundary-never-seen", sizeof(MSG_BOUNDARY_NEVER_SEEN) - 1, MSG_BOUNDARY_NEVER_SEEN,
      "(NIL \"no boundary match\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org"
      "\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mi"
      "xed\" (\"boundary\" \"XYZ\") NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")" },
    { "preamble-epilogue", sizeof(MSG_PREAMBLE_EPILOGUE) - 1, MSG_PREAMBLE_EPILOGUE,
      "(NIL \"preamble and epilogue\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example"
      ".org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 19 0 NIL NIL NIL NIL)(\"t"
      "ext\" \"plain\" (\"charset\" \"iso-8859-1\") NIL NIL \"7bit\" 8 0 NIL NIL NIL NIL) \"mixed"
      "\" (\"boundary\" \"pb\") NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 19 0)(\"text\" \"plain\" "
      "(\"charset\" \"iso-8859-1\") NIL NIL \"7bit\" 8 0) \"mixed\")" },
    { "encoded-words", sizeof(MSG_ENCODED_WORDS) - 1, MSG_ENCODED_WORDS,
      "(\"Wed, 2 Dec 2026 06:00:00 +0000\" \"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and =?UTF-8?Q?more?=\" ("
      "(\"=?UTF-8?B?QW5uZSDDhHhhbXBsZQ==?=\" NIL \"anne\" \"example.org\")) ((\"=?UTF-8?B?QW5uZSD"
      "DhHhhbXBsZQ==?=\" NIL \"anne\" \"example.org\")) ((\"=?UTF-8?B?QW5uZSDDhHhhbXBsZQ==?=\" NI"
      "L \"anne\" \"example.org\")) ((\"=?ISO-8859-1?Q?Andr=E9?=\" NIL \"andre\" \"example.net\")"
      ") NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1)" },
    { "eight-bit-header", sizeof(MSG_EIGHT_BIT_HEADER) - 1, MSG_EIGHT_BIT_HEADER,
      "(NIL {28}\r\n"
      "Gr\303\274\303\237e \"quoted\" \\ backslash (({5}\r\n"
      "J\303\266rg NIL \"joerg\" \"example.org\")) (({5}\r\n"
      "J\303\266rg NIL \"joerg\" \"example.org\")) (({5}\r\n"
      "J\303\266rg NIL \"joerg\" \"example.org\")) ((NIL NIL \"pete\" \"example.net\")) NIL NIL N"
      "IL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 30 1 NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 30 1)" },
    { "groups-and-obsolete", sizeof(MSG_GROUPS_AND_OBSOLETE) - 1, MSG_GROUPS_AND_OBSOLETE,
      "(NIL \"addresses\" ((\"Pete Comment\" NIL \"Pete\" \"example.net\")) ((NIL \"@relay1.examp"
      "le,@relay2.example\" \"pete\" \"example.net\")) ((\"Pete Comment\" NIL \"Pete\" \"example."
      "net\")) ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) ((NIL NIL \"john doe\""
      " \"example.com\")(\"Mary Smith\" NIL \"mary\" \"x.test\")(NIL NIL \"jdoe\" \"example.org\""
      ")(\"Who?\" NIL \"one\" \"y.test\")) ((NIL NIL \"A Group\" NIL)(\"Ed Jones\" NIL \"c\" \"a."
      "test\")(NIL NIL \"joe\" \"where.test\")(\"John\" NIL \"jdoe\" \"one.test\")(NIL NIL NIL NI"
      "L)(NIL NIL \"last\" \"example.com\")) NIL \"<abc@example.net>\")",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)" },
    { "empty-body", sizeof(MSG_EMPTY_BODY) - 1, MSG_EMPTY_BODY,
      "(NIL \"empty body\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) (("
      "NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)" },
    { "header-only", sizeof(MSG_HEADER_ONLY) - 1, MSG_HEADER_ONLY,
      "(NIL \"header only, no blank line\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"ex"
      "ample.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)" },
    { "multipart-no-boundary", sizeof(MSG_MULTIPART_NO_BOUNDARY) - 1, MSG_MULTIPART_NO_BOUNDARY,
      "(NIL \"multipart without boundary\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"ex"
      "ample.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mi"
      "xed\" NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")" },
    { "digest", sizeof(MSG_DIGEST) - 1, MSG_DIGEST,
      "(NIL \"digest\" ((NIL NIL \"list\" \"example.org\")) ((NIL NIL \"list\" \"example.org\")) "
      "((NIL NIL \"list\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 42 (NIL \"first\" ((NIL NIL \"a\" \"example."
      "org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NI"
      "L NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL"
      ") 3 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0 N"
      "IL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 43 (NIL \"second\" ((NIL NIL \""
      "b\" \"example.org\")) ((NIL NIL \"b\" \"example.org\")) ((NIL NIL \"b\" \"example.org\")) "
      "NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 N"
      "IL NIL NIL NIL) 3 NIL NIL NIL NIL) \"digest\" (\"boundary\" \"d\") NIL NIL NIL)",
      "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 42 (NIL \"first\" ((NIL NIL \"a\" \"example."
      "org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NI"
      "L NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0) 3)(\"text\" \""
      "plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0)(\"message\" \"rfc822\" NIL NIL N"
      "IL \"7bit\" 43 (NIL \"second\" ((NIL NIL \"b\" \"example.org\")) ((NIL NIL \"b\" \"example"
      ".org\")) ((NIL NIL \"b\" \"example.org\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"cha"
      "rset\" \"us-ascii\") NIL NIL \"7bit\" 3 0) 3) \"digest\")" },
    { "bare-lf", sizeof(MSG_BARE_LF) - 1, MSG_BARE_LF,
      "(NIL \"bare LF\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL"
      " NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL) \"mi"
      "xed\" (\"boundary\" \"lf\") NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0) \"mixed\")" },
    { "nul-and-8bit", sizeof(MSG_NUL_AND_8BIT) - 1, MSG_NUL_AND_8BIT,
      "(NIL {14}\r\n"
      "nul \357\277\275 byte \377 ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org"
      "\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 1)" },
    { "malformed-content-type", sizeof(MSG_MALFORMED_CONTENT_TYPE) - 1, MSG_MALFORMED_CONTENT_TYPE,
      "(NIL \"malformed\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((N"
      "IL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "(\"TEXT\" \"HTML\" (\"CHARSET\" \"UTF-8\" \"format\" \"flowed\") NIL NIL \"QUOTED-PRINTABL"
      "E\" 6 1 NIL NIL NIL NIL)",
      "(\"TEXT\" \"HTML\" (\"CHARSET\" \"UTF-8\" \"format\" \"flowed\") NIL NIL \"QUOTED-PRINTABL"
      "E\" 6 1)" },
    { "bad-content-type", sizeof(MSG_BAD_CONTENT_TYPE) - 1, MSG_BAD_CONTENT_TYPE,
      "(NIL \"bad type\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NI"
      "L NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1)" },
    { "rfc822-base64", sizeof(MSG_RFC822_BASE64) - 1, MSG_RFC822_BASE64,
      "(NIL \"encoded message\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\""
      ")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"message\" \"rfc822\" NIL NIL NIL \"base64\" 36 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NI"
      "L) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) 0 "
      "NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"e\") NIL NIL NIL)",
      "((\"message\" \"rfc822\" NIL NIL NIL \"base64\" 36 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NI"
      "L) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) 0) \"mixed\")" },
    { "unterminated-multipart", sizeof(MSG_UNTERMINATED_MULTIPART) - 1, MSG_UNTERMINATED_MULTIPART,
      "(NIL \"no close delimiter\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.or"
      "g\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)(\"te"
      "xt\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 29 0 NIL NIL NIL NIL) \"mixed\""
      " (\"boundary\" \"u\") NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0)(\"text\" \"plain\" ("
      "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 29 0) \"mixed\")" },
    { "delimiter-in-part-header", sizeof(MSG_DELIMITER_IN_PART_HEADER) - 1, MSG_DELIMITER_IN_PART_HEADER,
      "(NIL \"part without blank line\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"examp"
      "le.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"te"
      "xt\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL) \"mixed\" "
      "(\"boundary\" \"h\") NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)(\"text\" \"plain\" ("
      "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0) \"mixed\")" },
    { "empty-multipart", sizeof(MSG_EMPTY_MULTIPART) - 1, MSG_EMPTY_MULTIPART,
      "(NIL \"empty multipart\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\""
      ")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"al"
      "ternative\" (\"boundary\" \"z\") NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"alternative\")" },
    { "rfc2231-params", sizeof(MSG_RFC2231_PARAMS) - 1, MSG_RFC2231_PARAMS,
      "(NIL \"rfc2231\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL"
      " NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"application\" \"octet-stream\" (\"name*\" \"utf-8''na%C3%AFve.bin\") NIL NIL \"7bit\" "
      "4 NIL (\"attachment\" (\"filename\" \"longname.bin\")) NIL NIL) \"mixed\" (\"boundary\" \""
      "r\") NIL NIL NIL)",
      "((\"application\" \"octet-stream\" (\"name*\" \"utf-8''na%C3%AFve.bin\") NIL NIL \"7bit\" "
      "4) \"mixed\")" },
    { "sender-replyto", sizeof(MSG_SENDER_REPLYTO) - 1, MSG_SENDER_REPLYTO,
      "(\"\" \"\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"secretary\" \"example.org\")) ((N"
      "IL NIL \"list\" \"example.org\")(\"Other\" NIL \"o\" \"example.org\")) ((NIL NIL \"b\" \"e"
      "xample.org\")) NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL)",
      "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1)" },
    { "nested-deep", sizeof(MSG_NESTED_DEEP) - 1, MSG_NESTED_DEEP,
      "(NIL \"nested\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL "
      "NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL) \""
      "mixed\" (\"boundary\" \"l3\") NIL NIL NIL) \"mixed\" (\"boundary\" \"l2\") NIL NIL NIL) \""
      "mixed\" (\"boundary\" \"l1\") NIL NIL NIL)",
      "((((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0) \"mixed\") \"mixed"
      "\") \"mixed\")" },
    { "prefix-boundaries", sizeof(MSG_PREFIX_BOUNDARIES) - 1, MSG_PREFIX_BOUNDARIES,
      "(NIL \"boundary prefixes and padding\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \""
      "example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL)(\"te"
      "xt\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" "
      "(\"boundary\" \"=_b\") NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0)(\"text\" \"plain\" ("
      "\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")" },
    { "blank-line-before-delimiter", sizeof(MSG_BLANK_LINE_BEFORE_DELIMITER) - 1, MSG_BLANK_LINE_BEFORE_DELIMITER,
      "(NIL \"s2\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) "
      "NIL NIL NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)(\"me"
      "ssage\" \"rfc822\" NIL NIL NIL \"7bit\" 11 (NIL NIL ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\""
      " \"y\")) ((NIL NIL \"x\" \"y\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"u"
      "s-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL) \"mixed\" (\"boundary\""
      " \"b\") NIL NIL NIL)",
      "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)(\"message\" \"rfc822"
      "\" NIL NIL NIL \"7bit\" 11 (NIL NIL ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) ((NIL "
      "NIL \"x\" \"y\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL "
      "NIL \"7bit\" 0 0) 1) \"mixed\")" },
};

/* dump_part - everything the tree says about PART and below, for comparing two trees */
static void
dump_part(GString *out, const MimePart *part)
{
    g_string_append_printf(out, "[%u k%d m%d %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                           " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " l%" G_GUINT64_FORMAT
                           " s%" G_GUINT64_FORMAT " h%" G_GSIZE_FORMAT "%s ",
                           part->depth, part->kind, part->is_message, part->header_start,
                           part->blank_start, part->body_start, part->end, part->body_lines,
                           part->body_size, part->header_len, part->header_cut ? " cut" : "");
    if (part->header)
        g_string_append_len(out, part->header, (gssize)part->header_len);
    for (const MimePart *c = part->children; c; c = c->next)
        dump_part(out, c);
    g_string_append_c(out, ']');
}

/* dump - a tree as text: structure, offsets, ENVELOPE, BODYSTRUCTURE */
static char *
dump(const MimeTree *t)
{
    GString *out = g_string_new(NULL);
    g_string_append_printf(out, "size %" G_GUINT64_FORMAT " parts %u limited %d\n", t->size,
                           t->parts, t->limited);
    dump_part(out, t->root);
    g_string_append_c(out, '\n');
    mime_envelope(t->root, out);
    g_string_append_c(out, '\n');
    mime_bodystructure(t->root, TRUE, out);
    return g_string_free(out, FALSE);
}

/* parse_chunked - MSG fed in pieces of CHUNK octets (0: random sizes 1..64) */
static MimeTree *
parse_chunked(const char *msg, gsize len, gsize chunk)
{
    MimeParser *p = mime_parser_new();
    for (gsize pos = 0; pos < len;) {
        gsize n = chunk ? chunk : (gsize)g_test_rand_int_range(1, 65);
        n = MIN(n, len - pos);
        mime_parser_feed(p, msg + pos, n);
        pos += n;
    }
    return mime_parser_finish(&p);
}

static void
test_envelope_and_bodystructure_of_real_world_shapes(void)
{
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        const Case *c = &cases[i];
        g_test_message("%s", c->name);
        MimeTree *t = mime_parse(c->msg, c->len);
        g_assert_cmpuint(t->size, ==, c->len);
        GString *out = g_string_new(NULL);
        mime_envelope(t->root, out);
        g_assert_cmpstr(out->str, ==, c->envelope);
        g_string_truncate(out, 0);
        mime_bodystructure(t->root, TRUE, out);
        g_assert_cmpstr(out->str, ==, c->bodystructure);
        g_string_truncate(out, 0);
        mime_bodystructure(t->root, FALSE, out);
        g_assert_cmpstr(out->str, ==, c->body);
        g_string_free(out, TRUE);
        mime_tree_free(&t);
        g_assert_null(t);
    }
}

static void
test_any_chunking_gives_the_same_tree(void)
{
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        const Case *c = &cases[i];
        MimeTree *whole = mime_parse(c->msg, c->len);
        char *want = dump(whole);
        mime_tree_free(&whole);
        gsize chunks[] = { 1, 2, 3, 7, 64, 0, 0, 0, 0, 0 };
        for (gsize k = 0; k < G_N_ELEMENTS(chunks); k++) {
            MimeTree *t = parse_chunked(c->msg, c->len, chunks[k]);
            char *got = dump(t);
            if (strcmp(got, want) != 0)
                g_test_message("%s, chunks of %" G_GSIZE_FORMAT, c->name, chunks[k]);
            g_assert_cmpstr(got, ==, want);
            g_free(got);
            mime_tree_free(&t);
        }
        g_free(want);
    }
}

/* section - the octets BODY[SPEC] of MSG returns; NULL with the error code in *CODE */
static char *
section(const char *msg, const char *spec, int *code)
{
    MimeTree *t = mime_parse(msg, strlen(msg));
    GArray *r = g_array_new(FALSE, FALSE, sizeof(MimeRange));
    GError *error = NULL;
    char *res = NULL;
    *code = -1;
    if (mime_section_ranges(t, spec, r, &error)) {
        GString *s = g_string_new(NULL);
        for (guint i = 0; i < r->len; i++) {
            MimeRange *m = &g_array_index(r, MimeRange, i);
            g_assert_cmpuint(m->start + m->len, <=, t->size);
            g_string_append_len(s, msg + m->start, (gssize)m->len);
        }
        g_assert_cmpuint(mime_ranges_size(r), ==, s->len);
        res = g_string_free(s, FALSE);
    } else {
        g_assert_error(error, MIME_ERROR, error->code);
        *code = error->code;
        g_error_free(error);
    }
    g_array_unref(r);
    mime_tree_free(&t);
    return res;
}

/* assert_section - BODY[SPEC] of MSG is WANT */
static void
assert_section(const char *msg, const char *spec, const char *want)
{
    int code;
    char *got = section(msg, spec, &code);
    if (!got)
        g_test_message("BODY[%s]: error %d", spec, code);
    g_assert_nonnull(got);
    g_assert_cmpstr(got, ==, want);
    g_free(got);
}

/* assert_no_section - BODY[SPEC] of MSG is error CODE */
static void
assert_no_section(const char *msg, const char *spec, int code)
{
    int got_code;
    char *got = section(msg, spec, &got_code);
    if (got)
        g_test_message("BODY[%s] = \"%s\"", spec, got);
    g_assert_null(got);
    g_assert_cmpint(got_code, ==, code);
}

static void
test_sections_of_nested_multipart(void)
{
    const char *m = MSG_MIXED_ALTERNATIVE_ATTACHMENT;
    assert_section(m, "", m);
    assert_section(m, "1.1", "Hello =E2=80=94 the report is attached.");
    assert_section(m, "1.1.1", "Hello =E2=80=94 the report is attached.");   /* a leaf, once */
    assert_no_section(m, "1.1.1.1", MIME_ERROR_NO_PART);
    assert_section(m, "1.2", "<p>Hello, the report is attached.</p>");
    assert_section(m, "1.2.MIME", "Content-Type: text/html; charset=\"utf-8\"\r\n"
                                  "Content-Transfer-Encoding: 7bit\r\n\r\n");
    assert_section(m, "2", "JVBERi0xLjQKJcfs");
    assert_section(m, "1", "--inner\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                           "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                           "Hello =E2=80=94 the report is attached.\r\n--inner\r\n"
                           "Content-Type: text/html; charset=\"utf-8\"\r\n"
                           "Content-Transfer-Encoding: 7bit\r\n\r\n"
                           "<p>Hello, the report is attached.</p>\r\n--inner--");
    assert_section(m, "header.fields (SUBJECT cc)",
                   "Cc: team: a@example.org, b@example.org;\r\nSubject: Report with attachment\r\n\r\n");
    assert_section(m, "HEADER.FIELDS.NOT (Subject Cc Content-Type MIME-Version From To Date Message-ID)",
                   "In-Reply-To: <1@example.org>\r\n\r\n");
    assert_section(m, "HEADER.FIELDS (\"In-Reply-To\" X-None)", "In-Reply-To: <1@example.org>\r\n\r\n");
    const char *text = strstr(m, "\r\n\r\n") + 4;
    assert_section(m, "TEXT", text);
    char *header = g_strndup(m, (gsize)(text - m));
    assert_section(m, "HEADER", header);
    g_free(header);
    assert_no_section(m, "3", MIME_ERROR_NO_PART);
    assert_no_section(m, "2.HEADER", MIME_ERROR_NO_PART);   /* not a message/rfc822 */
}

static void
test_sections_of_forwarded_message(void)
{
    const char *m = MSG_FORWARDED_RFC822;
    assert_section(m, "1", "See below.\r\n");
    assert_section(m, "2.MIME", "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n");
    assert_section(m, "2.HEADER.FIELDS (Subject)", "Subject: Lunch\r\n\r\n");
    assert_section(m, "2.1", "noon?");
    assert_section(m, "2.2", "<b>noon?</b>");
    assert_section(m, "2.2.MIME", "Content-Type: text/html\r\n\r\n");
    const char *inner = strstr(m, "From: Anne");
    const char *inner_text = strstr(inner, "\r\n\r\n") + 4;
    char *h = g_strndup(inner, (gsize)(inner_text - inner));
    assert_section(m, "2.HEADER", h);
    g_free(h);
    /* the body of the message/rfc822 part ends before the CRLF of the last delimiter */
    const char *end = strstr(m, "\r\n--b1--");
    char *body = g_strndup(inner, (gsize)(end - inner));
    assert_section(m, "2", body);
    char *text = g_strndup(inner_text, (gsize)(end - inner_text));
    assert_section(m, "2.TEXT", text);
    g_free(body);
    g_free(text);

    /* a single-part message whose body is a message/rfc822 */
    const char *r = MSG_RFC822_SINGLE;
    assert_section(r, "1", strstr(r, "From: b@"));
    assert_section(r, "1.1", "inner body\r\ntwo lines\r\n");
    assert_section(r, "1.HEADER", "From: b@example.org\r\nSubject: inner\r\n\r\n");
    assert_section(r, "1.TEXT", "inner body\r\ntwo lines\r\n");
    assert_no_section(r, "1.1.1", MIME_ERROR_NO_PART);
}

static void
test_sections_of_odd_shapes(void)
{
    /* preamble and epilogue belong to no part */
    assert_section(MSG_PREAMBLE_EPILOGUE, "1", "part one, no header");
    assert_section(MSG_PREAMBLE_EPILOGUE, "1.MIME", "\r\n");
    assert_section(MSG_PREAMBLE_EPILOGUE, "2", "part two");
    /* an empty body; a header with no blank line (HEADER.FIELDS serves only the message's
     * octets: there is no blank line to add) */
    assert_section(MSG_EMPTY_BODY, "TEXT", "");
    assert_section(MSG_EMPTY_BODY, "1", "");
    assert_section(MSG_HEADER_ONLY, "HEADER", MSG_HEADER_ONLY);
    assert_section(MSG_HEADER_ONLY, "TEXT", "");
    assert_section(MSG_HEADER_ONLY, "HEADER.FIELDS (Subject)", "Subject: header only, no blank line");
    /* a digest's parts are messages by default */
    assert_section(MSG_DIGEST, "1.HEADER", "From: a@example.org\r\nSubject: first\r\n\r\n");
    assert_section(MSG_DIGEST, "3.1", "two");
    assert_no_section(MSG_DIGEST, "2.HEADER", MIME_ERROR_NO_PART);
    /* bare LF: ranges are stored octets */
    assert_section(MSG_BARE_LF, "1", "line");
    assert_section(MSG_BARE_LF, "1.MIME", "Content-Type: text/plain\n\n");
    /* an unended multipart: the last part runs to the end */
    assert_section(MSG_UNTERMINATED_MULTIPART, "2", "second, then the message ends");
    /* folded fields come whole */
    /* a blank line right before a delimiter is the delimiter's: not in the header */
    assert_section(MSG_BLANK_LINE_BEFORE_DELIMITER, "1.MIME", "Content-Type: text/plain\r\n");
    assert_section(MSG_BLANK_LINE_BEFORE_DELIMITER, "2.MIME", "Content-Type: message/rfc822\r\n\r\n");
    assert_section(MSG_BLANK_LINE_BEFORE_DELIMITER, "2.HEADER", "From: x@y\r\n");
    assert_section(MSG_BLANK_LINE_BEFORE_DELIMITER, "2", "From: x@y\r\n");
    assert_section(MSG_ENCODED_WORDS, "HEADER.FIELDS (SUBJECT)",
                   "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and\r\n =?UTF-8?Q?more?=\r\n\r\n");
}

static void
test_section_syntax(void)
{
    const char *m = MSG_MIXED_ALTERNATIVE_ATTACHMENT;
    const char *bad[] = { "0", "1.", ".1", "01", "1..2", "MIME", "HEADER.FIELDS", "HEADER.FIELDS ()",
                          "HEADER.FIELDS (a", "HEADER.FIELDS (a) x", "HEADER.FIELDS(a)", "TEXT.1",
                          "1.BODY", "x", "1.2.MIME.TEXT", "99999999999999999999",
                          "HEADER.FIELDS (\"a)", "HEADER.FIELDS.NOT", "1 ", " 1" };
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_test_message("%s", bad[i]);
        assert_no_section(m, bad[i], MIME_ERROR_SECTION);
    }
    assert_no_section(m, "4.1", MIME_ERROR_NO_PART);
    assert_no_section(m, "4.MIME", MIME_ERROR_NO_PART);
    const MimeTree *t = NULL;
    MimeTree *owned = mime_parse(m, strlen(m));
    t = owned;
    g_assert_true(mime_part_find(t, "") == t->root);
    g_assert_true(mime_part_find(t, "1.2") == t->root->children->children->next);
    g_assert_null(mime_part_find(t, "1.3"));
    g_assert_null(mime_part_find(t, "1.x"));
    mime_tree_free(&owned);
}

static void
test_partial_cuts_the_ranges(void)
{
    const char *m = MSG_MIXED_ALTERNATIVE_ATTACHMENT;
    MimeTree *t = mime_parse(m, strlen(m));
    GArray *r = g_array_new(FALSE, FALSE, sizeof(MimeRange));
    g_assert_true(mime_section_ranges(t, "HEADER.FIELDS (Cc Subject From)", r, NULL));
    GString *all = g_string_new(NULL);
    for (guint i = 0; i < r->len; i++)
        g_string_append_len(all, m + g_array_index(r, MimeRange, i).start,
                            (gssize)g_array_index(r, MimeRange, i).len);
    guint64 total = mime_ranges_size(r);
    g_assert_cmpuint(r->len, >, 1);
    for (guint64 origin = 0; origin <= total + 1; origin += 5)
        for (guint64 count = 0; count <= total + 2; count += 7) {
            GArray *c = g_array_copy(r);
            mime_ranges_partial(c, origin, count);
            GString *got = g_string_new(NULL);
            for (guint i = 0; i < c->len; i++)
                g_string_append_len(got, m + g_array_index(c, MimeRange, i).start,
                                    (gssize)g_array_index(c, MimeRange, i).len);
            guint64 want_len = origin >= total ? 0 : MIN(count, total - origin);
            g_assert_cmpuint(got->len, ==, want_len);
            g_assert_true(memcmp(got->str, all->str + MIN(origin, total), want_len) == 0);
            g_string_free(got, TRUE);
            g_array_unref(c);
        }
    mime_ranges_partial(r, 3, G_MAXUINT64);
    g_assert_cmpuint(mime_ranges_size(r), ==, total - 3);
    g_string_free(all, TRUE);
    g_array_unref(r);
    mime_tree_free(&t);
}

static void
test_header_done_after_the_blank_line(void)
{
    const char *m = MSG_FORWARDED_RFC822;
    const char *body = strstr(m, "\r\n\r\n") + 4;
    MimeParser *p = mime_parser_new();
    mime_parser_feed(p, m, (gsize)(body - m) - 1);
    g_assert_false(mime_parser_header_done(p));
    mime_parser_feed(p, body - 1, 1);
    g_assert_true(mime_parser_header_done(p));
    /* stopping there gives the ENVELOPE all the same */
    MimeTree *t = mime_parser_finish(&p);
    g_assert_null(p);
    GString *out = g_string_new(NULL);
    mime_envelope(t->root, out);
    g_assert_cmpstr(out->str, ==, cases[2].envelope);
    g_string_free(out, TRUE);
    mime_tree_free(&t);
    p = mime_parser_new();
    mime_parser_feed(p, "Subject: x\r\n", 12);
    mime_parser_free(&p);
    g_assert_null(p);
}

/* nested - a message nesting DEPTH multiparts, the innermost holding one text part */
static GString *
nested(guint depth)
{
    GString *m = g_string_new("Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n");
    for (guint i = 1; i < depth; i++)
        g_string_append_printf(m, "--b%u\r\nContent-Type: multipart/mixed; boundary=b%u\r\n\r\n",
                               i - 1, i);
    g_string_append_printf(m, "--b%u\r\n\r\ntext\r\n", depth - 1);
    for (guint i = depth; i-- > 0;)
        g_string_append_printf(m, "--b%u--\r\n", i);
    return m;
}

static void
test_depth_limit_makes_the_rest_opaque(void)
{
    GString *m = nested(MIME_DEPTH_MAX + 50);
    MimeTree *t = mime_parse(m->str, m->len);
    g_assert_true(t->limited);
    guint depth = 0;
    const MimePart *p = t->root;
    while (p->children) {
        p = p->children;
        depth++;
    }
    g_assert_cmpuint(depth, <, MIME_DEPTH_MAX);
    g_assert_cmpuint(p->end, <=, t->size);
    GString *out = g_string_new(NULL);
    mime_bodystructure(t->root, TRUE, out);
    /* balanced, and the innermost multipart shows one empty part */
    int level = 0;
    for (gsize i = 0; i < out->len; i++) {
        level += out->str[i] == '(' ? 1 : out->str[i] == ')' ? -1 : 0;
        g_assert_cmpint(level, >=, 0);
    }
    g_assert_cmpint(level, ==, 0);
    g_assert_nonnull(strstr(out->str, "\"7bit\" 0 0 NIL NIL NIL NIL)"));
    g_string_free(out, TRUE);
    mime_tree_free(&t);
    g_string_free(m, TRUE);

    /* just under the limit everything is parsed */
    m = nested(MIME_DEPTH_MAX - 2);
    t = mime_parse(m->str, m->len);
    g_assert_false(t->limited);
    g_assert_cmpuint(t->parts, ==, MIME_DEPTH_MAX - 1);
    mime_tree_free(&t);
    g_string_free(m, TRUE);
}

static void
test_parts_limit_makes_the_rest_opaque(void)
{
    GString *m = g_string_new("Subject: many\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n");
    for (guint i = 0; i < MIME_PARTS_MAX + 100; i++)
        g_string_append_printf(m, "--m\r\n\r\n%u\r\n", i);
    g_string_append(m, "--m--\r\n");
    MimeTree *t = mime_parse(m->str, m->len);
    g_assert_true(t->limited);
    g_assert_cmpuint(t->parts, ==, MIME_PARTS_MAX);
    /* the last part kept runs to the end of the message */
    const MimePart *last = t->root->children;
    guint n = 1;
    while (last->next) {
        last = last->next;
        n++;
    }
    g_assert_cmpuint(n, ==, MIME_PARTS_MAX - 1);
    g_assert_cmpuint(last->end, ==, m->len);
    g_assert_cmpuint(t->root->end, ==, m->len);
    mime_tree_free(&t);
    g_string_free(m, TRUE);
}

static void
test_header_keep_limit(void)
{
    GString *m = g_string_new("Subject: big header\r\nFrom: a@example.org\r\n");
    while (m->len < MIME_HEADER_KEEP + 1000)
        g_string_append(m, "X-Filler: 0123456789012345678901234567890123456789012345678901234567890\r\n");
    g_string_append(m, "To: late@example.org\r\n\r\nbody\r\n");
    MimeTree *t = parse_chunked(m->str, m->len, 4096);
    g_assert_true(t->limited);
    g_assert_true(t->root->header_cut);
    g_assert_cmpuint(t->root->header_len, ==, MIME_HEADER_KEEP);
    g_assert_cmpuint(t->root->body_start, ==, m->len - 6);
    GString *out = g_string_new(NULL);
    mime_envelope(t->root, out);
    /* fields in the kept part are seen, the one past it is not */
    g_assert_cmpstr(out->str, ==, "(NIL \"big header\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" "
                    "\"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)");
    g_string_free(out, TRUE);
    mime_tree_free(&t);
    g_string_free(m, TRUE);
}

static void
test_long_boundary_and_long_lines(void)
{
    /* a boundary over MIME_BOUNDARY_MAX: a multipart with no parts */
    GString *b = g_string_new(NULL);
    for (guint i = 0; i < MIME_BOUNDARY_MAX + 1; i++)
        g_string_append_c(b, 'x');
    GString *m = g_string_new(NULL);
    g_string_append_printf(m, "Content-Type: multipart/mixed; boundary=%s\r\n\r\n--%s\r\n\r\nx\r\n--%s--\r\n",
                           b->str, b->str, b->str);
    MimeTree *t = mime_parse(m->str, m->len);
    g_assert_cmpint(t->root->kind, ==, MIME_KIND_MULTIPART);
    g_assert_null(t->root->children);
    mime_tree_free(&t);
    /* one the longest allowed works, also with lines longer than what the parser holds */
    g_string_truncate(b, MIME_BOUNDARY_MAX);
    g_string_printf(m, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n\r\n", b->str, b->str);
    for (guint i = 0; i < 5000; i++)
        g_string_append_c(m, i % 2 ? '-' : 'y');
    g_string_append_printf(m, "\r\n--%sxyz\r\n--%s--\r\n", b->str, b->str);
    t = parse_chunked(m->str, m->len, 0);
    g_assert_nonnull(t->root->children);
    g_assert_nonnull(t->root->children->next);   /* "--bxyz" is a delimiter (prefix match) */
    g_assert_null(t->root->children->next->next);
    g_assert_cmpuint(t->root->children->body_size, ==, 5000);
    mime_tree_free(&t);
    g_string_free(b, TRUE);
    g_string_free(m, TRUE);
}

static void
test_large_message_in_megabyte_parts(void)
{
    /* 50 MiB: a text part and a base64 attachment, fed as the store hands it out (1 MiB parts);
     * only the headers are kept */
    const gsize total = 50u << 20;
    GString *head = g_string_new("From: a@example.org\r\nSubject: big\r\n"
                                 "Content-Type: multipart/mixed; boundary=big\r\n\r\n"
                                 "--big\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                                 "--big\r\nContent-Type: application/octet-stream\r\n"
                                 "Content-Transfer-Encoding: base64\r\n\r\n");
    const char *tail = "\r\n--big--\r\n";
    char line[78];
    memset(line, 'A', 76);
    line[76] = '\r';
    line[77] = '\n';
    gsize body = total - head->len - strlen(tail);
    body -= body % 78;
    guint64 lines = body / 78;
    MimeParser *p = mime_parser_new();
    mime_parser_feed(p, head->str, head->len);
    char *chunk = g_malloc(1u << 20);
    for (gsize i = 0; i < (1u << 20); i++)
        chunk[i] = line[i % 78];
    gsize fed = 0;
    while (fed < body) {
        gsize n = MIN((gsize)(1u << 20) - (gsize)(1u << 20) % 78, body - fed);
        mime_parser_feed(p, chunk, n);
        fed += n;
    }
    mime_parser_feed(p, tail, strlen(tail));
    MimeTree *t = mime_parser_finish(&p);
    const MimePart *att = t->root->children->next;
    /* the CRLF before the delimiter is the delimiter's */
    g_assert_cmpuint(att->body_size, ==, body + 2 - 2);
    g_assert_cmpuint(att->body_lines, ==, lines);   /* its last line end is the delimiter's */
    g_assert_cmpuint(t->size, ==, head->len + body + strlen(tail));
    g_assert_null(att->header);   /* a MIME part's header is not kept once parsed */
    g_free(chunk);
    g_string_free(head, TRUE);
    mime_tree_free(&t);
}

static void
test_strings_quoted_or_literal(void)
{
    GString *out = g_string_new(NULL);
    mime_append_nstring(out, NULL, 0);
    g_string_append_c(out, ' ');
    mime_append_nstring(out, "a \"b\" \\c", 8);
    g_string_append_c(out, ' ');
    mime_append_nstring(out, "", 0);
    g_string_append_c(out, ' ');
    mime_append_nstring(out, "J\xc3\xb6rg", 5);
    g_string_append_c(out, ' ');
    mime_append_nstring(out, "a\r\nb", 4);
    g_assert_cmpstr(out->str, ==, "NIL \"a \\\"b\\\" \\\\c\" \"\" {5}\r\nJ\xc3\xb6rg {4}\r\na\r\nb");
    g_string_truncate(out, 0);
    mime_append_nstring(out, "a\0b", 3);
    g_assert_cmpmem(out->str, out->len, "{3}\r\na\x80" "b", 8);
    g_string_free(out, TRUE);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/imap-mime/envelope-and-bodystructure-of-real-world-shapes",
                    test_envelope_and_bodystructure_of_real_world_shapes);
    g_test_add_func("/imap-mime/any-chunking-gives-the-same-tree", test_any_chunking_gives_the_same_tree);
    g_test_add_func("/imap-mime/sections-of-nested-multipart", test_sections_of_nested_multipart);
    g_test_add_func("/imap-mime/sections-of-forwarded-message", test_sections_of_forwarded_message);
    g_test_add_func("/imap-mime/sections-of-odd-shapes", test_sections_of_odd_shapes);
    g_test_add_func("/imap-mime/section-syntax", test_section_syntax);
    g_test_add_func("/imap-mime/partial-cuts-the-ranges", test_partial_cuts_the_ranges);
    g_test_add_func("/imap-mime/header-done-after-the-blank-line", test_header_done_after_the_blank_line);
    g_test_add_func("/imap-mime/depth-limit-makes-the-rest-opaque", test_depth_limit_makes_the_rest_opaque);
    g_test_add_func("/imap-mime/parts-limit-makes-the-rest-opaque", test_parts_limit_makes_the_rest_opaque);
    g_test_add_func("/imap-mime/header-keep-limit", test_header_keep_limit);
    g_test_add_func("/imap-mime/long-boundary-and-long-lines", test_long_boundary_and_long_lines);
    g_test_add_func("/imap-mime/large-message-in-megabyte-parts", test_large_message_in_megabyte_parts);
    g_test_add_func("/imap-mime/strings-quoted-or-literal", test_strings_quoted_or_literal);
    return g_test_run();
}
