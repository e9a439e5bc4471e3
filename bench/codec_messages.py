"""The codec benchmark's messages (bench/codec.py): a million realistic SMS texts, the same every run.

Mixed lengths (OTP ~50 chars to promotions of 900), about 5% with a character outside GSM-7 (emoji,
typographic quotes, Portuguese letters, other scripts), and about 10% with extension characters (€,
brackets, braces, tilde, pipe), from one seeded `random.Random`.
"""

from __future__ import annotations

import random

SEED = 20240603

FIRST = [
    "Ana",
    "Luis",
    "Maria",
    "Jose",
    "Carmen",
    "Pedro",
    "Laura",
    "Pablo",
    "Sofia",
    "Diego",
    "Marta",
    "Jorge",
    "Elena",
    "Ivan",
    "Nuria",
    "Raul",
]
LAST = [
    "Garcia",
    "Lopez",
    "Martin",
    "Perez",
    "Sanchez",
    "Romero",
    "Navarro",
    "Torres",
    "Dominguez",
    "Vazquez",
    "Ramos",
    "Gil",
]
SHOPS = [
    "Tienda Sol",
    "MercaPlus",
    "Optica Vision",
    "Farmacia Central",
    "Moda Luna",
    "TecnoHogar",
    "Deportes Cima",
]
SENTENCES = [
    "No olvides traer tu DNI.",
    "Si tienes dudas llamanos al 900 123 456.",
    "Promocion valida hasta fin de existencias.",
    "Consulta condiciones en nuestra web.",
    "Envio gratis en pedidos superiores a 30 EUR.",
    "Responde BAJA para no recibir mas mensajes.",
    "Te esperamos de lunes a sabado de 10:00 a 21:00.",
    "Your order has been dispatched and will arrive soon.",
    "Reply STOP to opt out.",
    "Use the code at checkout to get your discount.",
    "Horario de atencion: 9:00 - 18:00.",
    "Gracias por confiar en nosotros!",
    "Recuerda que puedes cambiar tu cita desde la app.",
    "Descarga la factura en tu area de cliente.",
]
EXT_SNIPPETS = ["{amount}€", "[OFERTA]", "{{VIP}}", "~{pct}%", "| Info", "^^", "[{code}]", "\\o/"]
NON_GSM = [
    " 😀", " 🎉", " 👍", "🔥 ", " ❤️", "“{word}”", "‘{word}’", " – ", "…", " ação", " não", " você",
    " Olá", " Иван", " 李伟", " مرحبا", "\u00a0", " ™", " ½", " №5",
]  # fmt: skip
WORDS = ["oferta", "cita", "pedido", "envio", "codigo", "factura", "regalo", "premio", "descuento", "sorteo"]


def _otp(r: random.Random) -> str:
    code = r.randrange(100000, 999999)
    return r.choice(
        [
            f"Tu codigo de verificacion es {code}. Caduca en {r.choice((5, 10, 15))} minutos.",
            f"Your verification code is {code}. Do not share it with anyone.",
            f"{code} es tu codigo de acceso a {r.choice(SHOPS)}.",
        ]
    )


def _delivery(r: random.Random) -> str:
    name = r.choice(FIRST)
    order = r.randrange(10**6, 10**7)
    url = f"https://trk.example.com/{r.randrange(16**8):08x}"
    return (
        f"Hola {name}, tu pedido {order} de {r.choice(SHOPS)} llegara el {r.randrange(1, 29)}/"
        f"{r.randrange(1, 13)} entre las {r.randrange(8, 14)}:00 y las {r.randrange(14, 21)}:00. "
        f"Sigue tu envio en {url}"
    )


def _reminder(r: random.Random) -> str:
    return (
        f"Recordatorio: {r.choice(FIRST)} {r.choice(LAST)}, tienes cita el {r.randrange(1, 29)}/"
        f"{r.randrange(1, 13)} a las {r.randrange(9, 20)}:{r.choice(('00', '15', '30', '45'))} en "
        f"{r.choice(SHOPS)}. {r.choice(SENTENCES)}"
    )


def _promo(r: random.Random) -> str:
    head = (
        f"{r.choice(FIRST).upper()}, solo hoy en {r.choice(SHOPS)}: -{r.choice((10, 15, 20, 30, 50))}% "
        f"en {r.choice(WORDS)}s con el codigo {r.choice(WORDS).upper()}{r.randrange(10, 99)}."
    )
    body = " ".join(r.choice(SENTENCES) for _ in range(r.choice((0, 1, 2, 2, 3, 4, 6, 9, 14))))
    return f"{head} {body}".strip()


KINDS = [(_otp, 0.25), (_delivery, 0.30), (_reminder, 0.20), (_promo, 0.25)]


def _splice(r: random.Random, text: str, snippet: str) -> str:
    cut = r.randrange(len(text) + 1)
    return text[:cut] + snippet + text[cut:]


def generate_messages(n: int, seed: int = SEED) -> list[str]:
    r = random.Random(seed)
    makers = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    out = []
    for _ in range(n):
        text = r.choices(makers, weights)[0](r)
        x = r.random()
        if x < 0.05:
            snippet = r.choice(NON_GSM).format(word=r.choice(WORDS))
            text = _splice(r, text, snippet)
        elif x < 0.15:
            snippet = r.choice(EXT_SNIPPETS).format(
                amount=r.randrange(5, 500), pct=r.randrange(5, 70), code=r.randrange(1000, 9999)
            )
            text = _splice(r, text, snippet)
        out.append(text)
    return out
