"""Each multiline preset on traces as its runtime prints them, between ordinary log lines.

The traces are written the way the runtimes write them (JDK 17 `printStackTrace` through
logback, CPython 3.11 chained tracebacks, Go 1.22 panics with several goroutines, Ruby
3.3, .NET 8, PHP 8 and Monolog); each test checks that the ordinary lines around a trace
stay events of their own and the trace is one event, byte for byte.
"""

from __future__ import annotations

import pytest

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.cri import CriParser
from kubelogs.codecs.multiline import MultilineParser, MultilineSpec
from kubelogs.codecs.multiline_rules import preset_rule

JAVA_TRACE = """\
2025-01-15 10:00:01.123 ERROR [http-nio-8080-exec-1] c.e.shop.OrderController - order failed
java.lang.IllegalStateException: could not place order 42
\tat com.example.shop.OrderService.place(OrderService.java:88)
\tat com.example.shop.OrderController.post(OrderController.java:41)
\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)
\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)
Caused by: org.springframework.dao.DataAccessResourceFailureException: connection refused
\tat org.springframework.jdbc.support.SQLExceptionSubclassTranslator.doTranslate(SQLExceptionSubclassTranslator.java:81)
\tat com.example.shop.OrderRepository.save(OrderRepository.java:19)
\t... 12 more
Caused by: java.net.ConnectException: Connection refused
\tat java.base/sun.nio.ch.Net.pollConnect(Native Method)
\tat java.base/sun.nio.ch.NioSocketImpl.connect(NioSocketImpl.java:592)
\t... 25 common frames omitted
\tSuppressed: java.io.IOException: close failed
\t\tat com.example.shop.Pool.close(Pool.java:7)
\t\t... 26 more"""  # noqa: E501 (real frames are long)

PYTHON_TRACE = """\
2025-01-15 10:00:02,001 ERROR worker: job 7 failed
Traceback (most recent call last):
  File "/app/worker.py", line 12, in run
    value = cache[key]
            ~~~~~^^^^^
KeyError: 'user:7'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/worker.py", line 14, in run
    value = db.load(key)
  File "/app/db.py", line 30, in load
    raise LookupError(key) from None
LookupError: user:7

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/app/worker.py", line 40, in main
    run(job)
RuntimeError: job 7 failed"""

GO_TRACE = """\
panic: runtime error: index out of range [5] with length 3

goroutine 42 [running]:
main.(*Server).handle(0xc000120000, {0x7f0c1d8e6e28, 0xc0001a4000})
\t/src/server.go:57 +0x1d4
net/http.HandlerFunc.ServeHTTP(0xc000010000?, {0x7f0c1d8e6e28?, 0xc0001a4000?}, 0x0?)
\t/usr/local/go/src/net/http/server.go:2166 +0x29
created by net/http.(*Server).Serve in goroutine 1
\t/usr/local/go/src/net/http/server.go:3285 +0x4b4

goroutine 1 [IO wait]:
internal/poll.runtime_pollWait(0x7f0c1d9a1e80, 0x72)
\t/usr/local/go/src/runtime/netpoll.go:345 +0x85
main.main()
\t/src/main.go:20 +0x1a5

goroutine 7 [chan receive]:
main.worker(0xc00007e060)
\t/src/worker.go:11 +0x3d
created by main.main in goroutine 1
\t/src/main.go:15 +0x9b
exit status 2"""

RUBY_TRACE = """\
/app/lib/billing.rb:12:in 'Billing#charge': card declined (Billing::Declined)
\tfrom /app/lib/checkout.rb:30:in 'Checkout#complete'
\tfrom /app/app.rb:7:in 'block in <main>'
\tfrom /app/app.rb:5:in 'Array#each'
\tfrom /app/app.rb:5:in '<main>'"""

DOTNET_TRACE = """\
fail: Shop.Api.OrdersController[0] order failed
System.InvalidOperationException: could not place order 42
 ---> System.Net.Http.HttpRequestException: Connection refused (payments:443)
   at System.Net.Http.HttpConnectionPool.ConnectToTcpHostAsync(String host, Int32 port)
   at Shop.Payments.Client.ChargeAsync(Order order) in /src/Payments/Client.cs:line 31
   --- End of inner exception stack trace ---
   at Shop.Api.OrdersController.Post(OrderDto dto) in /src/Api/OrdersController.cs:line 44
--- End of stack trace from previous location ---
   at Microsoft.AspNetCore.Mvc.Infrastructure.ActionMethodExecutor.Execute(ActionContext ctx)"""

PHP_TRACE = """\
PHP Fatal error:  Uncaught RuntimeException: payment failed in /var/www/src/Pay.php:17
Stack trace:
#0 /var/www/src/Checkout.php(42): App\\Pay->charge(Object(App\\Order))
#1 /var/www/public/index.php(9): App\\Checkout->complete()
#2 {main}

Next LogicException: checkout aborted in /var/www/src/Checkout.php:44
Stack trace:
#0 /var/www/public/index.php(9): App\\Checkout->complete()
#1 {main}
  thrown in /var/www/src/Checkout.php on line 44"""

MONOLOG_TRACE = """\
[2025-01-15T10:00:03.000000+00:00] app.ERROR: payment failed {"exception":"[object] (RuntimeException(code: 0): payment failed at /var/www/src/Pay.php:17)
[stacktrace]
#0 /var/www/src/Checkout.php(42): App\\\\Pay->charge()
#1 {main}
"} []"""  # noqa: E501


def join(preset: str, text: str) -> list[str]:
    """The messages a container log holding `text` becomes with `preset`."""
    parser = MultilineParser(CriParser(1 << 20), MultilineSpec(rule=preset_rule(preset)))
    cols = Columns()
    lines = [
        b"2025-01-15T10:00:00.000000001Z stdout F " + line for line in text.encode().split(b"\n")
    ]
    parser.feed(lines, 0, cols)
    parser.flush(cols)
    return cols.messages


def around(trace: str) -> str:
    return f"INFO started\n{trace}\nINFO next request\nINFO done"


@pytest.mark.parametrize(
    ("preset", "trace"),
    [
        ("java", JAVA_TRACE),
        ("python", PYTHON_TRACE),
        ("ruby", RUBY_TRACE),
        ("dotnet", DOTNET_TRACE),
    ],
)
def test_preset_joins_a_trace_and_its_log_message(preset: str, trace: str) -> None:
    """The log message that announces the error, the trace and its chained causes are
    one event; the lines before and after stay single events."""
    messages = join(preset, around(trace))

    assert ["INFO started", trace, "INFO next request", "INFO done"] == messages


def test_go_preset_joins_a_panic_with_every_goroutine_dump() -> None:
    """Blank lines between goroutines and the trailing ``exit status`` belong to the panic."""
    messages = join("go", around(GO_TRACE))

    assert ["INFO started", GO_TRACE, "INFO next request", "INFO done"] == messages


def test_go_preset_joins_a_fatal_error() -> None:
    trace = (
        "fatal error: all goroutines are asleep - deadlock!\n\n"
        "goroutine 1 [chan receive]:\nmain.main()\n\t/src/main.go:9 +0x2d"
    )

    assert ["INFO started", trace, "INFO next request", "INFO done"] == join("go", around(trace))


def test_php_preset_joins_uncaught_and_next_exceptions() -> None:
    """The blank line before ``Next`` and the final ``thrown in`` belong to the trace."""
    messages = join("php", around(PHP_TRACE))

    assert ["INFO started", PHP_TRACE, "INFO next request", "INFO done"] == messages


def test_php_preset_joins_a_monolog_stacktrace() -> None:
    messages = join("php", around(MONOLOG_TRACE))

    assert ["INFO started", MONOLOG_TRACE, "INFO next request", "INFO done"] == messages


def test_java_traces_back_to_back_are_two_events() -> None:
    """A new exception header after a finished trace starts a new event."""
    first = "java.lang.RuntimeException: one\n\tat A.a(A.java:1)"
    second = "java.lang.IllegalArgumentException: two\n\tat B.b(B.java:2)\n\t... 3 more"

    assert [first, second] == join("java", f"{first}\n{second}")


def test_python_traceback_without_chain_ends_at_its_exception_line() -> None:
    tb = 'Traceback (most recent call last):\n  File "a.py", line 1, in <module>\nValueError: x'

    assert [tb, "INFO after"] == join("python", f"{tb}\nINFO after")


def test_python_two_independent_tracebacks_are_two_events() -> None:
    tb = 'Traceback (most recent call last):\n  File "a.py", line 1, in <module>\nValueError: x'

    assert [tb, tb] == join("python", f"{tb}\n{tb}")


def test_plain_lines_are_never_joined_by_any_preset() -> None:
    text = "GET /healthz 200\nGET /api 500\nuser 7 logged in: ok\nERROR: disk full"
    for preset in ("java", "python", "go", "ruby", "dotnet", "php"):
        assert text.split("\n") == join(preset, text), preset
