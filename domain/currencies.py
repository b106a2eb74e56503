"""The currencies a purchase may be in: ISO 4217 alphabetic codes.

A list in the code rather than a package: the domain imports only the standard library,
and the list changes a few times a decade (a new code is a one-line change here). The
codes in use (ISO 4217 List One, as of 2025), without XXX ("no currency") and XTS
(reserved for testing), plus the codes withdrawn since 2015, so that a historical purchase
(in Croatian kuna, say) can still be published.
"""

from __future__ import annotations

from typing import Final

IN_USE: Final = frozenset("""
AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN
ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK
JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD
MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP
PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP
SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV
WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG
""".split())

# withdrawn since 2015 (ISO 4217 List Three): still meaningful on an old purchase
WITHDRAWN: Final = frozenset("ANG BGN BYR CUC HRK LTL MRO SLL STD VEF ZWL".split())

CURRENCIES: Final = IN_USE | WITHDRAWN


def is_currency(code: object) -> bool:
    return type(code) is str and code in CURRENCIES
