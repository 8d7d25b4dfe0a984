"""Countries and their capitals, written from common knowledge for the `capitals` task (public facts, CC0).

One row per sovereign state: (country, capital, other accepted spellings of the capital, other accepted
names of the country). Left out on purpose, because a single short answer would be arguable: states
with several capitals or a capital in the middle of a move (Bolivia, South Africa, Eswatini, Benin,
Burundi, Tanzania, Côte d'Ivoire, Sri Lanka, Equatorial Guinea), states whose capital is disputed
(Israel, Palestine), Nauru (no official capital) and Vatican City (a city that is its own state).
"""

from __future__ import annotations

Country = tuple[str, str, tuple[str, ...], tuple[str, ...]]  # (country, capital, capital alternatives, country alternatives)

AFRICA: tuple[Country, ...] = (
    ("Algeria", "Algiers", (), ()),
    ("Angola", "Luanda", (), ()),
    ("Botswana", "Gaborone", (), ()),
    ("Burkina Faso", "Ouagadougou", (), ()),
    ("Cape Verde", "Praia", (), ("Cabo Verde",)),
    ("Cameroon", "Yaoundé", ("Yaounde",), ()),
    ("the Central African Republic", "Bangui", (), ("CAR",)),
    ("Chad", "N'Djamena", ("Ndjamena", "N Djamena"), ()),
    ("Comoros", "Moroni", (), ("the Comoros",)),
    ("the Democratic Republic of the Congo", "Kinshasa", (), ("DR Congo", "DRC", "Congo", "Democratic Republic of Congo")),
    ("the Republic of the Congo", "Brazzaville", (), ("Congo", "Republic of Congo", "Congo-Brazzaville")),
    ("Djibouti", "Djibouti", ("Djibouti City",), ()),
    ("Egypt", "Cairo", (), ()),
    ("Eritrea", "Asmara", (), ()),
    ("Ethiopia", "Addis Ababa", (), ()),
    ("Gabon", "Libreville", (), ()),
    ("the Gambia", "Banjul", (), ("Gambia",)),
    ("Ghana", "Accra", (), ()),
    ("Guinea", "Conakry", (), ()),
    ("Guinea-Bissau", "Bissau", (), ()),
    ("Kenya", "Nairobi", (), ()),
    ("Lesotho", "Maseru", (), ()),
    ("Liberia", "Monrovia", (), ()),
    ("Libya", "Tripoli", (), ()),
    ("Madagascar", "Antananarivo", (), ()),
    ("Malawi", "Lilongwe", (), ()),
    ("Mali", "Bamako", (), ()),
    ("Mauritania", "Nouakchott", (), ()),
    ("Mauritius", "Port Louis", ("Port-Louis",), ()),
    ("Morocco", "Rabat", (), ()),
    ("Mozambique", "Maputo", (), ()),
    ("Namibia", "Windhoek", (), ()),
    ("Niger", "Niamey", (), ()),
    ("Nigeria", "Abuja", (), ()),
    ("Rwanda", "Kigali", (), ()),
    ("São Tomé and Príncipe", "São Tomé", ("Sao Tome",), ("Sao Tome and Principe",)),
    ("Senegal", "Dakar", (), ()),
    ("Seychelles", "Victoria", (), ("the Seychelles",)),
    ("Sierra Leone", "Freetown", (), ()),
    ("Somalia", "Mogadishu", (), ()),
    ("South Sudan", "Juba", (), ()),
    ("Sudan", "Khartoum", (), ()),
    ("Togo", "Lomé", ("Lome",), ()),
    ("Tunisia", "Tunis", (), ()),
    ("Uganda", "Kampala", (), ()),
    ("Zambia", "Lusaka", (), ()),
    ("Zimbabwe", "Harare", (), ()),
)

EUROPE: tuple[Country, ...] = (
    ("Albania", "Tirana", ("Tiranë",), ()),
    ("Andorra", "Andorra la Vella", (), ()),
    ("Austria", "Vienna", ("Wien",), ()),
    ("Belarus", "Minsk", (), ()),
    ("Belgium", "Brussels", ("Bruxelles",), ()),
    ("Bosnia and Herzegovina", "Sarajevo", (), ("Bosnia",)),
    ("Bulgaria", "Sofia", (), ()),
    ("Croatia", "Zagreb", (), ()),
    ("Cyprus", "Nicosia", (), ()),
    ("the Czech Republic", "Prague", ("Praha",), ("Czechia",)),
    ("Denmark", "Copenhagen", (), ()),
    ("Estonia", "Tallinn", (), ()),
    ("Finland", "Helsinki", (), ()),
    ("France", "Paris", (), ()),
    ("Germany", "Berlin", (), ()),
    ("Greece", "Athens", (), ()),
    ("Hungary", "Budapest", (), ()),
    ("Iceland", "Reykjavik", ("Reykjavík",), ()),
    ("Ireland", "Dublin", (), ("the Republic of Ireland",)),
    ("Italy", "Rome", ("Roma",), ()),
    ("Latvia", "Riga", (), ()),
    ("Liechtenstein", "Vaduz", (), ()),
    ("Lithuania", "Vilnius", (), ()),
    ("Luxembourg", "Luxembourg", ("Luxembourg City",), ()),
    ("Malta", "Valletta", (), ()),
    ("Moldova", "Chișinău", ("Chisinau", "Kishinev"), ()),
    ("Monaco", "Monaco", (), ()),
    ("Montenegro", "Podgorica", (), ()),
    ("the Netherlands", "Amsterdam", (), ("Holland",)),
    ("North Macedonia", "Skopje", (), ("Macedonia",)),
    ("Norway", "Oslo", (), ()),
    ("Poland", "Warsaw", (), ()),
    ("Portugal", "Lisbon", (), ()),
    ("Romania", "Bucharest", (), ()),
    ("Russia", "Moscow", (), ("the Russian Federation",)),
    ("San Marino", "San Marino", ("City of San Marino",), ()),
    ("Serbia", "Belgrade", (), ()),
    ("Slovakia", "Bratislava", (), ()),
    ("Slovenia", "Ljubljana", (), ()),
    ("Spain", "Madrid", (), ()),
    ("Sweden", "Stockholm", (), ()),
    ("Switzerland", "Bern", ("Berne",), ()),
    ("Ukraine", "Kyiv", ("Kiev",), ()),
    ("the United Kingdom", "London", (), ("UK", "Britain", "Great Britain", "United Kingdom of Great Britain and Northern Ireland")),
)

ASIA: tuple[Country, ...] = (
    ("Afghanistan", "Kabul", (), ()),
    ("Armenia", "Yerevan", (), ()),
    ("Azerbaijan", "Baku", (), ()),
    ("Bahrain", "Manama", (), ()),
    ("Bangladesh", "Dhaka", ("Dacca",), ()),
    ("Bhutan", "Thimphu", (), ()),
    ("Brunei", "Bandar Seri Begawan", (), ()),
    ("Cambodia", "Phnom Penh", (), ()),
    ("China", "Beijing", ("Peking",), ("the People's Republic of China", "PRC")),
    ("Georgia", "Tbilisi", (), ()),
    ("India", "New Delhi", (), ()),
    ("Indonesia", "Jakarta", (), ()),
    ("Iran", "Tehran", ("Teheran",), ()),
    ("Iraq", "Baghdad", (), ()),
    ("Japan", "Tokyo", (), ()),
    ("Jordan", "Amman", (), ()),
    ("Kazakhstan", "Astana", ("Nur-Sultan",), ()),
    ("Kuwait", "Kuwait City", (), ()),
    ("Kyrgyzstan", "Bishkek", (), ()),
    ("Laos", "Vientiane", (), ()),
    ("Lebanon", "Beirut", (), ()),
    ("Malaysia", "Kuala Lumpur", (), ()),
    ("the Maldives", "Malé", ("Male",), ("Maldives",)),
    ("Mongolia", "Ulaanbaatar", ("Ulan Bator",), ()),
    ("Myanmar", "Naypyidaw", ("Nay Pyi Taw", "Naypyitaw"), ("Burma",)),
    ("Nepal", "Kathmandu", (), ()),
    ("North Korea", "Pyongyang", (), ()),
    ("Oman", "Muscat", (), ()),
    ("Pakistan", "Islamabad", (), ()),
    ("the Philippines", "Manila", (), ("Philippines",)),
    ("Qatar", "Doha", (), ()),
    ("Saudi Arabia", "Riyadh", (), ()),
    ("Singapore", "Singapore", (), ()),
    ("South Korea", "Seoul", (), ("Korea", "the Republic of Korea")),
    ("Syria", "Damascus", (), ()),
    ("Tajikistan", "Dushanbe", (), ()),
    ("Thailand", "Bangkok", (), ()),
    ("East Timor", "Dili", (), ("Timor-Leste",)),
    ("Turkey", "Ankara", (), ("Türkiye",)),
    ("Turkmenistan", "Ashgabat", (), ()),
    ("the United Arab Emirates", "Abu Dhabi", (), ("UAE",)),
    ("Uzbekistan", "Tashkent", (), ()),
    ("Vietnam", "Hanoi", ("Ha Noi",), ("Viet Nam",)),
    ("Yemen", "Sanaa", ("Sana'a",), ()),
)

AMERICAS: tuple[Country, ...] = (
    ("Antigua and Barbuda", "St. John's", ("Saint John's", "St John's"), ()),
    ("Argentina", "Buenos Aires", (), ()),
    ("the Bahamas", "Nassau", (), ("Bahamas",)),
    ("Barbados", "Bridgetown", (), ()),
    ("Belize", "Belmopan", (), ()),
    ("Brazil", "Brasília", ("Brasilia",), ()),
    ("Canada", "Ottawa", (), ()),
    ("Chile", "Santiago", ("Santiago de Chile",), ()),
    ("Colombia", "Bogotá", ("Bogota",), ()),
    ("Costa Rica", "San José", ("San Jose",), ()),
    ("Cuba", "Havana", ("La Habana",), ()),
    ("Dominica", "Roseau", (), ()),
    ("the Dominican Republic", "Santo Domingo", (), ()),
    ("Ecuador", "Quito", (), ()),
    ("El Salvador", "San Salvador", (), ()),
    ("Grenada", "St. George's", ("Saint George's", "St George's"), ()),
    ("Guatemala", "Guatemala City", (), ()),
    ("Guyana", "Georgetown", (), ()),
    ("Haiti", "Port-au-Prince", (), ()),
    ("Honduras", "Tegucigalpa", (), ()),
    ("Jamaica", "Kingston", (), ()),
    ("Mexico", "Mexico City", (), ()),
    ("Nicaragua", "Managua", (), ()),
    ("Panama", "Panama City", (), ()),
    ("Paraguay", "Asunción", ("Asuncion",), ()),
    ("Peru", "Lima", (), ()),
    ("Saint Kitts and Nevis", "Basseterre", (), ("St. Kitts and Nevis",)),
    ("Saint Lucia", "Castries", (), ("St. Lucia",)),
    ("Saint Vincent and the Grenadines", "Kingstown", (), ("St. Vincent and the Grenadines",)),
    ("Suriname", "Paramaribo", (), ()),
    ("Trinidad and Tobago", "Port of Spain", ("Port-of-Spain",), ()),
    ("the United States", "Washington, D.C.", ("Washington", "Washington DC"),
     ("USA", "US", "the United States of America", "America")),
    ("Uruguay", "Montevideo", (), ()),
    ("Venezuela", "Caracas", (), ()),
)

OCEANIA: tuple[Country, ...] = (
    ("Australia", "Canberra", (), ()),
    ("Fiji", "Suva", (), ()),
    ("Kiribati", "South Tarawa", ("Tarawa",), ()),
    ("the Marshall Islands", "Majuro", (), ("Marshall Islands",)),
    ("Micronesia", "Palikir", (), ("the Federated States of Micronesia",)),
    ("New Zealand", "Wellington", (), ()),
    ("Palau", "Ngerulmud", (), ()),
    ("Papua New Guinea", "Port Moresby", (), ()),
    ("Samoa", "Apia", (), ()),
    ("the Solomon Islands", "Honiara", (), ("Solomon Islands",)),
    ("Tonga", "Nuku'alofa", ("Nukualofa",), ()),
    ("Tuvalu", "Funafuti", (), ()),
    ("Vanuatu", "Port Vila", ("Port-Vila",), ()),
)

SOUTH_AMERICA = frozenset({"Argentina", "Brazil", "Chile", "Colombia", "Ecuador", "Guyana", "Paraguay", "Peru", "Suriname",
                           "Uruguay", "Venezuela"})
CENTRAL_AMERICA = frozenset({"Belize", "Costa Rica", "El Salvador", "Guatemala", "Honduras", "Nicaragua", "Panama"})
# states across two continents: either continent is a right answer (the first is the one asked about first)
TWO_CONTINENTS = {"Russia": ("Europe", "Asia"), "Turkey": ("Asia", "Europe"), "Kazakhstan": ("Asia", "Europe"),
                  "Georgia": ("Asia", "Europe"), "Armenia": ("Asia", "Europe"), "Azerbaijan": ("Asia", "Europe"),
                  "Cyprus": ("Europe", "Asia"), "Egypt": ("Africa", "Asia")}
OCEANIA_ALTERNATIVES = ("Australia", "Australia and Oceania", "Australasia")

COUNTRIES: tuple[Country, ...] = AFRICA + EUROPE + ASIA + AMERICAS + OCEANIA


def continents_of(country: str) -> tuple[str, ...]:
    """The accepted continents of a country (the first is the reference answer)."""
    bare = country[4:] if country.startswith("the ") else country
    if bare in TWO_CONTINENTS:
        return TWO_CONTINENTS[bare]
    for name, rows in (("Africa", AFRICA), ("Europe", EUROPE), ("Asia", ASIA), ("Oceania", OCEANIA)):
        if any(row[0] == country for row in rows):
            return (name, *OCEANIA_ALTERNATIVES) if name == "Oceania" else (name,)
    if bare in SOUTH_AMERICA:
        return ("South America",)
    return ("North America", "Central America") if bare in CENTRAL_AMERICA else ("North America",)
