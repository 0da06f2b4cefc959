"""Writes water_cycle.pdf, the PDF material of the evaluation course.

Run once in a throwaway virtual environment; the PDF is committed, so the suite never
needs Python:

    python3 -m venv /tmp/pdf-venv && /tmp/pdf-venv/bin/pip install fpdf2==2.8.9
    /tmp/pdf-venv/bin/python eval/course/make_pdf.py

The text is ASCII only (the PDF core fonts cover Latin-1, and plain ASCII extracts the same
way from every PDF reader), and the creation date is fixed so the output is reproducible.
The facts of the Brennet catchment are invented for this course, so a model cannot know
them without reading the material.
"""

import datetime
import pathlib

from fpdf import FPDF

TITLE = "Unit 1: The Water Cycle in the Brennet Catchment"
SUBTITLE = "Aldermoor Secondary School - Geography, Year 9"

# One page per section: (heading, paragraphs).
PAGES = [
    (
        "1. The drainage basin as a system",
        [
            "A drainage basin, also called a catchment, is the area of land drained by a "
            "river and its tributaries. Its edge is the watershed, usually a line of high "
            "ground. We study the drainage basin as an open system: water enters as "
            "precipitation, passes through stores and flows, and leaves through the river "
            "mouth, through evaporation and through transpiration.",
            "Our case study is the River Brennet. The Brennet rises at Harl Tor, 487 metres "
            "above sea level, and flows 38 kilometres south-east to the Saltmere estuary. "
            "Its catchment covers 214 square kilometres and is home to about 61,000 people, "
            "most of them in the towns of Ketterby and Millbridge.",
            "Inputs. The only input is precipitation, and it is very uneven. The rain gauge "
            "at Harl Tor records a mean of 1,620 mm a year, while the gauge at Saltmere "
            "records only 710 mm. Moist westerly air rises over the moorland, cools and "
            "drops most of its water on the upper catchment, so the lower catchment lies "
            "in a partial rain shadow.",
            "Stores. Water is held in the catchment in five stores: interception on leaves "
            "and branches, surface storage in puddles, lakes and reservoirs, soil water, "
            "groundwater, and the river channel itself. The largest surface store is Harl "
            "Reservoir, built in 1971, which holds up to 9.2 million cubic metres.",
            "Interception. The Fallow Wood conifer plantation covers 17 square kilometres "
            "of the middle catchment. Measurements by the Brennet Rivers Trust show that "
            "its canopy intercepts about 28 per cent of the rain that falls on it; much of "
            "this water evaporates straight back into the air and never reaches the soil.",
        ],
    ),
    (
        "2. Infiltration, throughflow and groundwater",
        [
            "Infiltration is the movement of water from the surface into the soil. Its "
            "rate depends on the soil and on the rock beneath it. On the upper catchment "
            "the soil is blanket peat over granite; it is often saturated, and its "
            "infiltration capacity is only about 4 mm per hour. When rain falls faster "
            "than this, the extra water runs over the surface as overland flow.",
            "In the lower catchment the river crosses the Ketterby Sandstone, a permeable "
            "rock. Here the soils are sandy loams with an infiltration capacity of about "
            "22 mm per hour, so even heavy rain usually soaks in. Water that moves sideways "
            "through the soil towards the river is called throughflow; water that sinks "
            "further, into the rock, is called percolation.",
            "The Ketterby Sandstone is an aquifer: a rock that stores groundwater and lets "
            "it flow. Six boreholes at Ketterby pump water from it, and they supply about "
            "60 per cent of the drinking water used in the catchment. The water table "
            "under Ketterby lies at an average depth of 14 metres, but it fell to 19 "
            "metres during the dry summer of 2018.",
            "Groundwater seeps slowly into the river and keeps it flowing between storms. "
            "This slow supply is called baseflow. The Brennet has a baseflow index of "
            "0.46, which means that 46 per cent of the water in the river over a year has "
            "come through the ground rather than straight off the surface.",
        ],
    ),
    (
        "3. Storm hydrographs",
        [
            "A storm hydrograph is a graph of a river's discharge over time during and "
            "after a storm, drawn together with a bar chart of the rainfall. Discharge is "
            "the volume of water passing a point each second and is measured in cumecs, "
            "cubic metres per second. Lag time is the time between peak rainfall and peak "
            "discharge.",
            "The gauging station at Millbridge has recorded the discharge of the Brennet "
            "every 15 minutes since 1986. On a normal day the discharge is about 3.1 "
            "cumecs. The channel at Millbridge is bankfull at 95 cumecs; above that, water "
            "spills onto the floodplain.",
            "The storm of 14 November 2019 is the largest flood on the Millbridge record. "
            "A total of 63 mm of rain fell in 11 hours on ground that was already "
            "saturated. The river peaked at 148 cumecs, and the lag time was 7.5 hours. "
            "About 240 homes in Millbridge were flooded, most of them on Tanner Street and "
            "around Weavers Yard.",
            "A flashy river has a short lag time and a high peak, while a subdued river "
            "has a long lag time and a low peak. The upper Brennet is flashy, because of "
            "its steep slopes, impermeable granite and saturated peat. The lower Brennet "
            "is more subdued, because the sandstone soaks up water and releases it slowly.",
        ],
    ),
    (
        "4. People and the catchment",
        [
            "Urbanisation makes rivers flashier. When the Eastfield housing estate was "
            "built on the edge of Ketterby in 2014, the share of impermeable surfaces such "
            "as roofs, roads and car parks in the Ketterby sub-catchment rose from 23 per "
            "cent to 41 per cent. Drains now carry rainwater to the river within minutes "
            "instead of hours.",
            "After the 2019 flood the council chose a mix of hard and soft engineering. "
            "The Millbridge flood wall, 1.9 metres high, protects Tanner Street. Upstream, "
            "3,500 trees were planted on the slopes above Cobbler's Weir, and a flood "
            "storage area called the Dunmere Washland can hold 1.4 million cubic metres of "
            "water when the river is high.",
            "The scheme cost 6.8 million pounds. Supporters say that it protects about 400 "
            "properties; critics point out that the washland floods farmland belonging to "
            "Pellow Farm several times a year.",
        ],
    ),
]


def main() -> None:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime.datetime(2024, 9, 1, tzinfo=datetime.timezone.utc))
    pdf.set_title(TITLE)
    pdf.set_author("Aldermoor Secondary School")
    pdf.set_margins(25, 25, 25)
    for index, (heading, paragraphs) in enumerate(PAGES):
        pdf.add_page()
        if index == 0:
            pdf.set_font("Helvetica", "B", 18)
            pdf.multi_cell(0, 9, TITLE, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", "I", 11)
            pdf.multi_cell(0, 7, SUBTITLE, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(6)
        pdf.set_font("Helvetica", "B", 14)
        pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font("Helvetica", "", 11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    out = pathlib.Path(__file__).with_name("water_cycle.pdf")
    pdf.output(str(out))
    print(f"wrote {out} ({len(PAGES)} pages)")


if __name__ == "__main__":
    main()
