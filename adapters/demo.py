"""A deterministic, multilingual synthetic contact-centre stream for `up --demo` and benchmarks."""

from __future__ import annotations

import bisect
import gc
import heapq
import itertools
import random
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DAY = 86_400.0
AGENTS = tuple(f"agent-{i}" for i in range(1, 13))
QUEUES = ("billing", "support", "sales", "technical")

# Locale: (weight, tz offset in minutes, phone prefixes, national digits, currencies, lang).
LOCALES: dict[str, tuple[float, int, tuple[str, ...], int, tuple[str, ...], str]] = {
    "HU": (0.35, 60, ("+3630", "+3620", "+3670"), 7, ("HUF", "HUF", "EUR"), "hu"),
    "IR": (0.20, 210, ("+98912", "+98935"), 7, ("EUR",), "fa"),
    "CN": (0.20, 480, ("+86138", "+86159"), 8, ("USD",), "zh"),
    "GB": (0.15, 0, ("+4474", "+4478"), 8, ("EUR", "USD"), "en"),
    "DE": (0.10, 60, ("+49151", "+49176"), 8, ("EUR",), "de"),
}
# Locale code -> (UTC offset in seconds, ISO suffix); fixed offsets, no DST, for a demo.
_OFFSETS = {code: (v[1] * 60.0, f"+{v[1] // 60:02d}:{v[1] % 60:02d}")
            for code, v in LOCALES.items()}
_OFFSETS["UTC"] = (0.0, "+00:00")
_EPOCH = datetime(1970, 1, 1)
_FX = {"EUR": 1.0, "USD": 0.92, "HUF": 1 / 400}  # only to size amounts alike in every currency

GIVEN = {
    "HU": "Anna Mária Zsófia Eszter Katalin Éva Júlia Réka Orsolya László István Gábor Zoltán "
    "Péter Bence Ádám Dávid Tamás Balázs Gergely".split(),
    "IR": "مریم:maryam زهرا:zahra فاطمه:fatemeh سارا:sara نگار:negar لیلا:leila علی:ali "
    "محمد:mohammad رضا:reza حسین:hossein امیر:amir مهدی:mehdi".split(),
    "CN": "芳:fang 伟:wei 娜:na 敏:min 静:jing 丽:li 强:qiang 磊:lei 军:jun 洋:yang 秀英:xiuying "
    "建华:jianhua".split(),
    "GB": "Emma Oliver Amelia George Isla Harry Sophie Jack Grace Thomas".split(),
    "DE": "Jürgen Jörg Lena Lukas Sophie Maximilian Hannah Felix Lea Günther".split(),
}
FAMILY = {
    "HU": "Kovács Nagy Tóth Szabó Horváth Varga Kiss Molnár Németh Farkas Balogh Papp Takács "
    "Juhász Mészáros Fekete".split(),
    "IR": "احمدی:ahmadi محمدی:mohammadi حسینی:hosseini رضایی:rezaei کریمی:karimi "
    "موسوی:mousavi نوروزی:nowruzi جعفری:jafari صادقی:sadeghi رحیمی:rahimi".split(),
    "CN": "王:wang 李:li 张:zhang 刘:liu 陈:chen 杨:yang 黄:huang 赵:zhao 吴:wu 周:zhou".split(),
    "GB": "Smith Jones Taylor Brown Williams Wilson Evans Walker".split(),
    "DE": "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schäfer Groß".split(),
}

# Per language: complaint texts by category, email subjects, chat lines, survey comments.
_T: dict[str, dict[str, tuple[str, ...]]] = {
    "hu": {
        "billing": ("Kétszer vonták le a havidíjat a számlámról.",
                    "A számlán szereplő összeg nem egyezik a megrendeléssel."),
        "technical": ("Napok óta nem tudok belépni a fiókomba.",
                      "Az alkalmazás fizetéskor mindig hibát jelez."),
        "delivery": ("A csomagom egy hete nem érkezett meg.",
                     "Sérült termék érkezett, kérem a cseréjét."),
        "service": ("Háromszor hívtam, senki nem hívott vissza.",
                    "Az ügyintéző udvariatlan volt és nem oldotta meg a problémát."),
        "subject": ("Kérdés a számlámmal kapcsolatban", "Rendelés állapota", "Jelszó visszaállítás",
                    "Előfizetés lemondása"),
        "in": ("Jó napot, segítene a rendelésemmel?", "Mikor érkezik a csomagom?",
               "Nem működik a kuponkód.", "Köszönöm, ez megoldotta."),
        "out": ("Üdvözlöm, miben segíthetek?", "Máris utánanézek.",
                "Megoldottam, kérem ellenőrizze.", "Köszönjük a türelmét!"),
        "reply": ("Köszönjük megkeresését, kollégánk hamarosan felveszi Önnel a kapcsolatot.",),
        "good": ("Gyors és kedves ügyintézés, köszönöm!", "Minden rendben volt."),
        "bad": ("Túl sokat kellett várnom.", "A problémám továbbra sem megoldott."),
    },
    "fa": {
        "billing": ("مبلغ صورتحساب من دو بار کسر شده است.",
                    "مبلغ فاکتور با سفارش من مطابقت ندارد."),
        "technical": ("چند روز است که نمی‌توانم وارد حساب کاربری شوم.",
                      "برنامه هنگام پرداخت خطا می‌دهد."),
        "delivery": ("سفارش من هنوز نرسیده است.", "کالا آسیب‌دیده به دستم رسید."),
        "service": ("سه بار تماس گرفتم و کسی پاسخ نداد.", "پشتیبان مشکل مرا حل نکرد."),
        "subject": ("سوال درباره صورتحساب", "وضعیت سفارش", "بازیابی رمز عبور", "لغو اشتراک"),
        "in": ("سلام، لطفاً در مورد سفارشم راهنمایی کنید.", "بسته من کی می‌رسد؟",
               "کد تخفیف کار نمی‌کند.", "ممنون، مشکل حل شد."),
        "out": ("سلام، چطور می‌توانم کمک کنم؟", "الان بررسی می‌کنم.",
                "مشکل برطرف شد، لطفاً بررسی کنید.", "از صبر شما سپاسگزاریم!"),
        "reply": ("از تماس شما سپاسگزاریم؛ همکاران ما به زودی با شما تماس می‌گیرند.",),
        "good": ("خدمات سریع و محترمانه، ممنون!", "همه چیز عالی بود."),
        "bad": ("زمان انتظار خیلی طولانی بود.", "مشکل من هنوز حل نشده است."),
    },
    "zh": {
        "billing": ("我的月费被重复扣款了。", "账单金额与订单不符。"),
        "technical": ("几天来一直无法登录我的账户。", "付款时应用程序总是报错。"),
        "delivery": ("我的包裹一周了还没到。", "收到的商品已损坏,请求更换。"),
        "service": ("我打了三次电话,没有人回电。", "客服态度不好,问题也没有解决。"),
        "subject": ("关于账单的问题", "订单状态", "重置密码", "取消订阅"),
        "in": ("你好,能帮我查一下订单吗?", "我的包裹什么时候到?", "优惠码无法使用。",
               "谢谢,问题解决了。"),
        "out": ("您好,请问有什么可以帮您?", "我马上为您查询。", "已经处理好了,请确认。",
                "感谢您的耐心等待!"),
        "reply": ("感谢您的来信,我们的同事会尽快与您联系。",),
        "good": ("服务快速又热情,谢谢!", "一切都很好。"),
        "bad": ("等待时间太长了。", "我的问题仍然没有解决。"),
    },
    "en": {
        "billing": ("I was charged twice this month.",
                    "The invoice total does not match my order."),
        "technical": ("I cannot log in to my account for days now.",
                      "The app shows an error at checkout."),
        "delivery": ("My parcel has not arrived after a week.", "The item arrived damaged."),
        "service": ("I called three times and nobody called back.",
                    "The agent was rude and did not solve my problem."),
        "subject": ("Question about my invoice", "Order status", "Password reset",
                    "Cancel my subscription"),
        "in": ("Hi, can you help me with my order?", "When will my parcel arrive?",
               "The coupon code does not work.", "Thanks, that fixed it."),
        "out": ("Hello, how can I help?", "Let me check that for you.",
                "Done, please check again.", "Thank you for your patience!"),
        "reply": ("Thank you for contacting us; a colleague will get back to you shortly.",),
        "good": ("Quick and friendly, thank you!", "Everything was fine."),
        "bad": ("I had to wait far too long.", "My problem is still not solved."),
    },
    "de": {
        "billing": ("Mir wurde die Monatsgebühr doppelt abgebucht.",
                    "Der Rechnungsbetrag stimmt nicht mit meiner Bestellung überein."),
        "technical": ("Ich kann mich seit Tagen nicht anmelden.",
                      "Die App zeigt beim Bezahlen einen Fehler."),
        "delivery": ("Mein Paket ist nach einer Woche noch nicht da.",
                     "Die Ware kam beschädigt an."),
        "service": ("Ich habe dreimal angerufen, niemand hat zurückgerufen.",
                    "Der Mitarbeiter war unfreundlich und hat nichts gelöst."),
        "subject": ("Frage zu meiner Rechnung", "Bestellstatus", "Passwort zurücksetzen",
                    "Abo kündigen"),
        "in": ("Hallo, können Sie mir bei meiner Bestellung helfen?", "Wann kommt mein Paket?",
               "Der Gutscheincode funktioniert nicht.", "Danke, das hat geholfen."),
        "out": ("Guten Tag, wie kann ich helfen?", "Ich sehe gleich nach.",
                "Erledigt, bitte prüfen Sie es.", "Danke für Ihre Geduld!"),
        "reply": ("Danke für Ihre Nachricht; ein Kollege meldet sich in Kürze bei Ihnen.",),
        "good": ("Schnell und freundlich, danke!", "Alles bestens."),
        "bad": ("Die Wartezeit war viel zu lang.", "Mein Problem ist immer noch nicht gelöst."),
    },
}
CATEGORY_QUEUE = {"billing": "billing", "technical": "technical", "delivery": "support",
                  "service": "support"}
PAGES = ("/", "/products", "/products/router-x2", "/pricing", "/cart", "/checkout",
         "/support/faq", "/account", "/account/invoices", "/blog/crm-tips")
REFERRERS = ("https://www.google.com/", "https://www.facebook.com/", "https://www.bing.com/",
             "https://t.me/", "https://www.baidu.com/")
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
_Out = list[tuple[float, int, dict[str, Any]]]


@dataclass(slots=True)  # not frozen: frozen __init__ costs a third of building 10^4 customers
class Customer:
    """One synthetic customer: identifiers, locale and behaviour profile."""

    id: str
    name: str
    locale: str
    email: str
    phone: str
    visitor_ids: tuple[str, ...]
    currency: str
    tier: str  # vip / high / regular / low: a few big spenders, many small ones
    spend: float  # mean purchase size in EUR
    purchase_rate: float  # purchases per 30 days
    rhythm_days: float  # mean days between contacts
    satisfaction: float  # 0..1 tendency
    joined_ago_days: float
    churn_ago_days: float | None  # None: still active; else silent since then
    login_ago_days: float  # web visits before this are anonymous (visitor id only)

    @property
    def lang(self) -> str:
        return LOCALES[self.locale][5]


class _Rng(random.Random):
    """random.Random with a cheaper choice(): the generator calls it a dozen times an event."""

    def choice(self, seq: Any) -> Any:
        return seq[int(self.random() * len(seq))]

    def below(self, n: int) -> int:
        return int(self.random() * n)


@contextmanager
def _no_gc() -> Iterator[None]:
    # Building ~10^5 small dicts triggers the cyclic GC over and over (about a third of the run
    # time); none of them form cycles, so pause it for the build only and restore it after.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def uuid4(rng: random.Random) -> str:
    """A version-4 UUID string drawn from `rng`, so that ids repeat with the seed."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _ascii(text: str) -> str:
    text = text.replace("ß", "ss")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii()).lower()


def _split(entry: str) -> tuple[str, str]:
    native, _, latin = entry.partition(":")
    return native, latin or _ascii(native)


def messy_email(email: str, rng: random.Random) -> str:
    """The same address as a careless form would send it: mixed case, stray spaces."""
    local, _, domain = email.partition("@")
    return f" {local.title()}@{domain.capitalize()} " if rng.random() < 0.5 else email.upper()


def national_phone(phone: str) -> str:
    """A readable form: HU numbers in national format (06 ...), others spaced international."""
    if phone.startswith("+36"):
        d = phone[3:]
        return f"06 {d[:2]} {d[2:5]} {d[5:]}"
    cc = 2 if phone[1:3] in ("98", "86", "44", "49") else 1
    d = phone[1 + cc:]
    return f"+{phone[1:1 + cc]} {d[:3]} {d[3:6]} {d[6:]}"


_GIVEN = {loc: [_split(e) for e in names] for loc, names in GIVEN.items()}
_FAMILY = {loc: [_split(e) for e in names] for loc, names in FAMILY.items()}


class DemoPopulation:
    """A seeded population of customers whose past and live interactions can be replayed."""

    def __init__(self, seed: int = 7, customers: int = 500, now: datetime | None = None) -> None:
        self.seed = seed
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self._now_ts = self.now.timestamp()
        rng = _Rng(seed)
        width = max(4, len(str(customers)))
        seen_email: set[str] = set()
        seen_phone: set[str] = set()
        codes = list(LOCALES)
        cum = list(itertools.accumulate(LOCALES[c][0] for c in codes))
        with _no_gc():
            self.customers: list[Customer] = [
                self._make(rng, f"c-{i:0{width}d}", rng.choices(codes, cum_weights=cum)[0],
                           seen_email, seen_phone) for i in range(1, customers + 1)
            ]
        self.active = [c for c in self.customers if c.churn_ago_days is None]
        self._active_cum = list(itertools.accumulate(1.0 / c.rhythm_days for c in self.active))

    @staticmethod
    def _make(rng: _Rng, cid: str, loc: str, seen_email: set[str],
              seen_phone: set[str]) -> Customer:
        _, _, prefixes, digits, currencies, _ = LOCALES[loc]
        g_nat, g_lat = rng.choice(_GIVEN[loc])
        f_nat, f_lat = rng.choice(_FAMILY[loc])
        name = {"HU": f"{f_nat} {g_nat}", "CN": f"{f_nat}{g_nat}"}.get(loc, f"{g_nat} {f_nat}")
        local = f"{g_lat}.{f_lat}"
        while f"{local}@" in seen_email or not local:
            local = f"{g_lat}.{f_lat}{10 + rng.below(990)}"
        seen_email.add(f"{local}@")
        email = f"{local}@{rng.choice(_EMAIL_DOMAINS)}"
        phone = ""
        while not phone or phone in seen_phone:
            phone = f"{rng.choice(prefixes)}{rng.randrange(10**digits):0{digits}d}"
        seen_phone.add(phone)
        n_visitors = 2 if rng.random() < 0.2 else 1
        visitors = tuple(f"v-{rng.getrandbits(48):012x}" for _ in range(n_visitors))
        # The 80/20 rule: value tiers with spend and frequency both rising.
        r = rng.random()
        tier, spend, rate = (("vip", 600.0, 2.0) if r < 0.05 else ("high", 200.0, 1.2)
                             if r < 0.2 else ("regular", 70.0, 0.8) if r < 0.6
                             else ("low", 30.0, 0.5))
        churn = None
        if rng.random() < 0.12:
            churn = rng.uniform(32.0, 75.0)
        joined = rng.uniform(0.0, 60.0) if rng.random() < 0.15 else 10_000.0
        return Customer(
            id=cid, name=name, locale=loc, email=email, phone=phone, visitor_ids=visitors,
            currency=rng.choice(currencies), tier=tier, spend=spend * rng.uniform(0.6, 1.5),
            purchase_rate=rate, rhythm_days=rng.lognormvariate(1.6, 0.6),
            satisfaction=min(1.0, max(0.0, rng.gauss(0.7, 0.18))), joined_ago_days=joined,
            churn_ago_days=churn, login_ago_days=rng.uniform(-30.0, 80.0),
        )

    # -- history -----------------------------------------------------------------------------

    def history(self, days: int = 90) -> Iterator[dict[str, Any]]:
        """Envelopes over the past `days` days, oldest first; the same seed gives the same ids."""
        rng = _Rng(f"{self.seed}:history")
        gen = _Generator(rng, self._now_ts, self._now_ts)
        out: _Out = []
        horizon = days * DAY
        gen.floor_ts = self._now_ts - horizon
        with _no_gc():
            self._fill_history(rng, gen, horizon, out)
        for t, _, env in out:
            env["occurred_at"] = gen.iso(t, env.pop("_tz"))
            yield env

    def _fill_history(self, rng: _Rng, gen: _Generator, horizon: float, out: _Out) -> None:
        for c in self.customers:
            start = self._now_ts - min(horizon, c.joined_ago_days * DAY)
            end = self._now_ts - (c.churn_ago_days or 0.0) * DAY
            t = start + rng.expovariate(1.0 / (c.rhythm_days * DAY))
            # Purchases run on their own clock: big spenders buy often, whatever else happens.
            p = start + rng.expovariate(c.purchase_rate / (30 * DAY))
            while t < end or p < end:
                if p <= t:
                    gen.purchase(c, p, end, out)
                    p += rng.expovariate(c.purchase_rate / (30 * DAY))
                else:
                    gen.episode(c, t, end, out)
                    t += rng.expovariate(1.0 / (c.rhythm_days * DAY))
        for _ in range(len(self.customers) // 4):  # visitors who never identify themselves
            gen.anonymous_visit(self._now_ts - rng.uniform(0, horizon), out)
        if len(self.customers) > 1:  # the README's unmerge: c-0002's number, first unknown
            c = self.customers[1]
            gen.unknown_number_then_known(
                c, self._now_ts - min(horizon, c.joined_ago_days * DAY) + 60, out)
        out.sort()  # by (time, seq): seq is unique, so envelopes are never compared

    # -- live --------------------------------------------------------------------------------

    def live(self, rate_per_s: float, start: datetime | None = None,
             clock: Callable[[], datetime] | None = None) -> Iterator[dict[str, Any]]:
        """Endless new events, occurred_at = start + index / rate (or clock()); never sleeps."""
        if rate_per_s <= 0 and clock is None:
            raise ValueError("rate_per_s must be positive")
        t0 = (start or (clock() if clock else self.now)).timestamp()
        rng = _Rng(f"{self.seed}:live:{t0}")
        gen = _Generator(rng, self._now_ts, float("inf"), live=True)
        pending: _Out = []
        total = self._active_cum[-1] if self._active_cum else 0.0
        i = 0
        while True:
            now = clock().timestamp() if clock else t0 + i / rate_per_s
            i += 1
            if not pending or pending[0][0] > now:
                batch: _Out = []
                if rng.random() < 0.05 or not self.active:
                    gen.anonymous_visit(now, batch)
                else:
                    c = self.active[bisect.bisect(self._active_cum, rng.random() * total)]
                    if rng.random() < c.purchase_rate / (c.purchase_rate + 30 / c.rhythm_days):
                        gen.purchase(c, now, float("inf"), batch)
                    else:
                        gen.episode(c, now, float("inf"), batch)
                for item in batch:
                    # Follow-ups keep short gaps (a call's length) but hours shrink to minutes,
                    # so replies and surveys show up while someone watches the demo.
                    gap = item[0] - now
                    due = now + (gap if gap <= 300 else min(900.0, 300 + (gap - 300) / 60))
                    heapq.heappush(pending, (due, item[1], item[2]))
                if not pending:
                    continue
            _, _, env = heapq.heappop(pending)
            env["occurred_at"] = gen.iso(max(now, t0), env.pop("_tz"), ms=True)
            yield env


class _Generator:
    """Builds episodes (a call, an email thread, a chat...) as (time, seq, envelope) items."""

    def __init__(self, rng: _Rng, ref_ts: float, cutoff_ts: float,
                 live: bool = False) -> None:
        self.rng = rng
        self.ref_ts = ref_ts  # the population's "now": churn and login times count from it
        self.cutoff_ts = cutoff_ts  # nothing is emitted at or after this
        self.floor_ts = float("-inf")  # nor before this
        self.live = live
        self.seq = 0
        self._dates: dict[int, str] = {}
        self._isos: dict[tuple[int, str], str] = {}
        self.agent_skill = {a: random.Random(f"skill:{a}").uniform(-0.15, 0.15) for a in AGENTS}

    def iso(self, t: float, tz: str, ms: bool = False) -> str:
        # Hand-formatted with a per-day cache: datetime.isoformat was a third of the run time.
        if not ms:
            key = (int(t), tz)
            text = self._isos.get(key)
            if text is None:
                text = self._isos[key] = self._iso(t, tz, False)
            return text
        return self._iso(t, tz, True)

    def _iso(self, t: float, tz: str, ms: bool) -> str:
        off_s, suffix = _OFFSETS[tz]
        local = t + off_s
        day = int(local // DAY)
        date = self._dates.get(day)
        if date is None:
            date = self._dates[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
        h, rest = divmod(int(local - day * DAY), 3600)
        m, s = divmod(rest, 60)
        frac = f".{int(local % 1 * 1000):03d}" if ms else ""
        return f"{date}T{h:02d}:{m:02d}:{s:02d}{frac}{suffix}"

    def emit(self, out: _Out, t: float, end: float, tz: str,
             type_: str, source: str, customer: dict[str, Any], channel: str, agent: str | None,
             queue: str | None, payload: dict[str, Any]) -> bool:
        if t >= end or t >= self.cutoff_ts or t < self.floor_ts:
            return False
        self.seq += 1
        out.append((t, self.seq, {
            "event_id": uuid4(self.rng),
            "type": type_, "occurred_at": "", "source": source, "customer": customer,
            "channel": channel, "agent_id": agent, "queue": queue, "case_id": None,
            "payload": payload, "_tz": tz,
        }))
        return True

    def who(self, c: Customer, *, id: bool = True, email: bool = False, phone: bool = False,
            visitor: bool = False, name: bool = False, raw: bool = False) -> dict[str, Any]:
        rng = self.rng
        e = c.email if email else None
        p = c.phone if phone else None
        if raw and e and rng.random() < 0.25:
            e = messy_email(e, rng)
        if raw and p and rng.random() < 0.3:
            p = national_phone(p)
        return {"id": c.id if id else None, "email": e, "phone": p,
                "visitor_id": rng.choice(c.visitor_ids) if visitor else None,
                "name": c.name if name else None}

    def mood(self, c: Customer, t: float, agent: str | None = None) -> float:
        s = c.satisfaction + (self.agent_skill[agent] if agent else 0.0)
        if c.churn_ago_days is not None:  # drifting away: mood sours towards the end
            left = (self.ref_ts - c.churn_ago_days * DAY - t) / DAY
            s -= max(0.0, 0.4 - left / 50)
        return min(1.0, max(0.0, s + self.rng.gauss(0, 0.12)))

    def _local_hours(self, c: Customer, t: float) -> float:
        if self.live:
            return t
        off = LOCALES[c.locale][1] * 60
        day = (t + off) // DAY * DAY
        return day + self.rng.uniform(7.5 * 3600, 21.5 * 3600) - off

    def episode(self, c: Customer, t: float, end: float, out: _Out) -> None:
        r = self.rng.random()
        churning = c.churn_ago_days is not None and (
            self.ref_ts - c.churn_ago_days * DAY - t) < 25 * DAY
        if churning and r < 0.3:
            self.complaint(c, t, end, out)
        elif r < 0.35:
            self.web(c, t, end, out)
        elif r < 0.58:
            self.call(c, self._local_hours(c, t), end, out)
        elif r < 0.76:
            self.email(c, self._local_hours(c, t), end, out)
        elif r < 0.92:
            self.chat(c, self._local_hours(c, t), end, out)
        else:
            self.complaint(c, self._local_hours(c, t), end, out)

    def survey(self, c: Customer, t: float, end: float, out: _Out, channel: str,
               agent: str | None, queue: str | None, bias: float = 0.0) -> None:
        rng = self.rng
        if rng.random() > 0.35:
            return
        s = min(1.0, max(0.0, self.mood(c, t, agent) + bias))
        kind = rng.choice(("csat", "csat", "nps", "ces"))
        score = {"csat": 1 + round(4 * s), "nps": round(10 * s), "ces": 1 + round(6 * s)}[kind]
        payload: dict[str, Any] = {"kind": kind, "score": score}
        if rng.random() < 0.3:
            payload["comment"] = rng.choice(_T[c.lang]["good" if s >= 0.6 else "bad"])
        self.emit(out, t + rng.uniform(600, 6 * 3600), end, c.locale, "survey.answered",
                  "surveytool", self.who(c), channel, agent, queue, payload)

    def call(self, c: Customer, t: float, end: float, out: _Out) -> None:
        rng = self.rng
        tz = c.locale
        inbound = rng.random() < 0.8
        direction = "inbound" if inbound else "outbound"
        queue = rng.choice(QUEUES)
        who = self.who(c, id=rng.random() < 0.6, phone=True, raw=True)
        if not self.emit(out, t, end, tz, "call.started", "pbx", who, "voice", None, queue,
                         {"direction": direction}):
            return
        wait = int(rng.expovariate(1 / 90)) if inbound else 0
        r = rng.random()
        outcome = ("abandoned" if inbound and (r < 0.1 or wait > 400) else "missed"
                   if not inbound and r < 0.3 else "transferred" if r > 0.92 else "answered")
        talk = int(rng.lognormvariate(5.3, 0.7)) if outcome in ("answered", "transferred") else 0
        agent = None if outcome == "abandoned" else rng.choice(AGENTS)
        self.emit(out, t + wait + talk + 1, end, tz, "call.ended", "pbx", who, "voice", agent,
                  queue, {"direction": direction, "outcome": outcome, "duration_s": talk,
                          "wait_s": wait})
        if talk:
            self.survey(c, t + wait + talk, end, out, "voice", agent, queue)

    def email(self, c: Customer, t: float, end: float, out: _Out) -> None:
        rng = self.rng
        tz, texts = c.locale, _T[c.lang]
        i = rng.below(len(texts["subject"]))
        subject = texts["subject"][i]
        queue = ("billing", "support", "technical", "sales")[i]
        payload = {"subject": subject, "body": rng.choice(texts["in"])}
        if not self.emit(out, t, end, tz, "email.received", "mailgw",
                         self.who(c, id=False, email=True, name=True, raw=True), "email", None,
                         queue, payload):
            return
        if rng.random() < 0.9:  # some threads are still waiting for an answer
            agent = rng.choice(AGENTS)
            t2 = t + rng.expovariate(1 / (6 * 3600)) + 120
            self.emit(out, t2, end, tz, "email.sent", "crm", self.who(c, email=True), "email",
                      agent, queue, {"subject": f"Re: {subject}", "body": texts["reply"][0]})
            self.survey(c, t2, end, out, "email", agent, queue)

    def chat(self, c: Customer, t: float, end: float, out: _Out) -> None:
        rng = self.rng
        tz, texts = c.locale, _T[c.lang]
        channel = rng.choice(("chat", "chat", "chat", "social", "sms"))
        who = (self.who(c, email=True, visitor=True) if channel == "chat"
               else self.who(c, phone=True) if channel == "sms" else self.who(c))
        agent, queue = rng.choice(AGENTS), rng.choice(("support", "sales"))
        for k in range(2 + rng.below(5)):
            inbound = k % 2 == 0
            self.emit(out, t, end, tz, "chat.message", "chatwidget" if channel == "chat" else
                      channel, who, channel, None if inbound else agent, queue,
                      {"direction": "inbound" if inbound else "outbound",
                       "text": rng.choice(texts["in" if inbound else "out"])})
            t += rng.uniform(10, 180)
        self.survey(c, t, end, out, channel, agent, queue)

    def web(self, c: Customer, t: float, end: float, out: _Out) -> None:
        rng = self.rng
        logged_in = t >= self.ref_ts - c.login_ago_days * DAY
        who = (self.who(c, id=False, email=True, visitor=True, raw=True) if logged_in
               else self.who(c, id=False, visitor=True))
        session = f"s-{rng.getrandbits(40):010x}"
        for k in range(1 + rng.below(4)):
            payload: dict[str, Any] = {"url": f"https://shop.example.com/{c.lang}"
                                       f"{rng.choice(PAGES)}", "session_id": session,
                                       "duration_s": int(rng.expovariate(1 / 45)) + 1}
            if k == 0 and rng.random() < 0.6:
                payload["referrer"] = rng.choice(REFERRERS)
            self.emit(out, t, end, c.locale, "web.visit", "webtracker", who, "web", None,
                      None, payload)
            t += payload["duration_s"] + rng.uniform(1, 20)
        if logged_in and rng.random() < 0.1:
            self.consent(c, t, end, out)

    def consent(self, c: Customer, t: float, end: float, out: _Out) -> None:
        """Marketing consent given on the web (for email, sometimes web too); some of it
        withdrawn later through an email's unsubscribe link."""
        rng = self.rng
        who = self.who(c, email=True)
        channels = ("email", "web") if rng.random() < 0.4 else ("email",)
        for ch in channels:
            self.emit(out, t, end, c.locale, "consent.changed", "webform", who, "web", None,
                      None, {"channel": ch, "granted": True, "purpose": "marketing"})
        if rng.random() < 0.3:
            t2 = t + rng.expovariate(1 / (10 * DAY)) + 3600
            self.emit(out, t2, end, c.locale, "consent.changed", "unsubscribe", who, "email",
                      None, None, {"channel": "email", "granted": False,
                                   "purpose": "marketing"})

    def anonymous_visit(self, t: float, out: _Out) -> None:
        who = {"id": None, "email": None, "phone": None,
               "visitor_id": f"v-{self.rng.getrandbits(48):012x}", "name": None}
        self.emit(out, t, float("inf"), "UTC", "web.visit", "webtracker", who, "web", None, None,
                  {"url": f"https://shop.example.com{self.rng.choice(PAGES)}",
                   "duration_s": int(self.rng.expovariate(1 / 30)) + 1})

    def unknown_number_then_known(self, c: Customer, t: float, out: _Out) -> None:
        """A call from a number nobody knew yet (a customer of its own, by that number
        alone), then a complaint naming the customer and the number: the two merge."""
        end, queue = float("inf"), "support"
        caller = {"id": None, "email": None, "phone": c.phone, "visitor_id": None,
                  "name": None}
        self.emit(out, t, end, c.locale, "call.started", "pbx", caller, "voice", None, queue,
                  {"direction": "inbound"})
        self.emit(out, t + 240, end, c.locale, "call.ended", "pbx", caller, "voice",
                  AGENTS[0], queue, {"direction": "inbound", "outcome": "answered",
                                     "duration_s": 200, "wait_s": 40})
        self.emit(out, t + 3600, end, c.locale, "complaint.filed", "webform",
                  self.who(c, email=True, phone=True, name=True), "web", None, queue,
                  {"category": "service", "priority": "normal",
                   "description": self.rng.choice(_T[c.lang]["service"])})

    def complaint(self, c: Customer, t: float, end: float, out: _Out) -> None:
        rng = self.rng
        tz = c.locale
        category = rng.choice(tuple(CATEGORY_QUEUE))
        queue = CATEGORY_QUEUE[category]
        priority = rng.choices(("low", "normal", "high", "urgent"), (0.2, 0.45, 0.25, 0.1))[0]
        channel, source = rng.choice((("web", "webform"), ("web", "webform"), ("email", "mailgw"),
                                      ("voice", "pbx")))
        if not self.emit(out, t, end, tz, "complaint.filed", source,
                         self.who(c, email=True, phone=True, name=True, raw=True), channel, None,
                         queue, {"category": category, "priority": priority,
                                 "description": rng.choice(_T[c.lang][category])}):
            return
        if rng.random() < 0.75:
            agent = rng.choice(AGENTS)
            t2 = t + rng.expovariate(1 / (8 * 3600)) + 300
            subject = _T[c.lang]["subject"][0]
            self.emit(out, t2, end, tz, "email.sent", "crm", self.who(c, email=True), "email",
                      agent, queue, {"subject": f"Re: {subject}", "body": _T[c.lang]["reply"][0]})
            self.survey(c, t2 + DAY, end, out, channel, agent, queue, bias=-0.2)

    def purchase(self, c: Customer, t: float, end: float, out: _Out) -> None:
        rng = self.rng
        amount = c.spend * rng.lognormvariate(0, 0.4) / _FX[c.currency]
        channel, source = rng.choice((("web", "shop"), ("web", "shop"), ("in_person", "pos"),
                                      ("voice", "pbx")))
        oid = f"ord-{rng.getrandbits(48):012x}"
        self.emit(out, self._local_hours(c, t), end, c.locale, "purchase.completed",
                  source, self.who(c, email=True, name=True), channel,
                  rng.choice(AGENTS) if channel != "web" else None,
                  "sales" if channel != "web" else None,
                  {"amount": f"{amount:.2f}", "currency": c.currency, "order_id": oid})


def synthetic_events(n: int, seed: int = 1, customers: int = 10_000,
                     now: datetime | None = None) -> list[dict[str, Any]]:
    """n valid, mixed envelopes for benchmarks, occurred_at spread over the hour before `now`."""
    with _no_gc():
        return _synthetic(n, seed, customers, now)


def _synthetic(n: int, seed: int, customers: int, now: datetime | None) -> list[dict[str, Any]]:
    pop = DemoPopulation(seed=seed, customers=customers, now=now)
    rng = _Rng(f"{seed}:synthetic")
    gen = _Generator(rng, pop._now_ts, float("inf"), live=True)
    start, span = pop._now_ts - 3600.0, 3600.0
    out: _Out = []
    total = pop._active_cum[-1]
    # Episodes at evenly rising times, ~2.4 events each; top up if short, then trim.
    episodes = int(n / 2.4) + 16
    while len(out) < n:
        for k in range(episodes):
            t = start + span * k / episodes
            c = pop.active[bisect.bisect(pop._active_cum, rng.random() * total)]
            if rng.random() < 0.15:
                gen.purchase(c, t, float("inf"), out)
            else:
                gen.episode(c, t, float("inf"), out)
        episodes = max(16, n - len(out))
    out.sort()  # by (time, seq): seq is unique, so envelopes are never compared
    del out[n:]
    end = start + span  # follow-ups due later are pulled in: nothing lies in the future
    for ti, _, env in out:
        env["occurred_at"] = gen.iso(min(ti, end), env.pop("_tz"))
    return [env for _, _, env in out]
