SET a = 1;
COPY t (a) FROM stdin;
1
\.
CREATE FUNCTION f() AS $x$ ; $x$;
